"""`verify`: prove a migration right by reading both sides, writing to neither.

Four checks: counts (the same count check `apply` ends with), sampled equality (source
records mapped exactly as `apply` maps them, compared with the target's points field by
field), search agreement (top-k on the source and on Qdrant), and target health.

The sample is drawn from one pass over the source's partitions (reservoir sampling, so
memory holds the sample, not the source), which also counts what the job's filter
selects now. `sample: all` compares every record, page by page.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qdrant_client import models

from qmigrate.counts import count_check
from qmigrate.engine import Resolved, before_data_moves
from qmigrate.extra_points import ExtraPoints
from qmigrate.mapping import ClientFilter, InvalidRecord, Mapper, point_id
from qmigrate.progress import Progress
from qmigrate.records import Record, VectorField

SHOWN_DIFFERENCES = 10  # differences listed per check
FETCH_BATCH = 256  # target points retrieved per request
# Relative and absolute tolerance per stored datatype: Qdrant keeps float32 by default.
TOLERANCE = {"float32": (1e-5, 1e-6), "float16": (2e-3, 2e-3), "uint8": (0.0, 1.0)}


@dataclass(frozen=True)
class Settings:
    sample: int | None  # None: every record
    queries: int
    top_k: int
    min_overlap: float

    @classmethod
    def of(cls, job_section: dict[str, Any], overrides: dict[str, Any]) -> Settings:
        """The job's `verify:` section, with command-line values winning."""
        values = {"sample": 1000, "queries": 50, "top_k": 10, "min_overlap": 0.8}
        values.update(job_section)
        values.update({k: v for k, v in overrides.items() if v is not None})
        sample = values["sample"]
        return cls(
            sample=None if sample == "all" else int(sample),
            queries=int(values["queries"]),
            top_k=int(values["top_k"]),
            min_overlap=float(values["min_overlap"]),
        )


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skip
    figure: str
    differences: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    job: str
    checks: list[Check]
    elapsed: float

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "ok": self.ok,
            "elapsed": round(self.elapsed, 3),
            "checks": [check.__dict__ for check in self.checks],
        }


def verify(resolved: Resolved, settings: Settings, progress_stream: Any = None) -> Report:
    started = time.monotonic()
    scan = _Scan(resolved, settings, ExtraPoints(resolved.target, settings.sample))
    scan.run(progress_stream)
    checks = [
        _counts(resolved, scan),
        scan.sample_check(),
        _search(resolved, settings, scan.queries),
        _health(resolved),
    ]
    return Report(resolved.job.name, checks, time.monotonic() - started)


# --- the pass over the source -------------------------------------------------------------


class _Scan:
    """Reads every partition once: counts what the job selects, keeps a reservoir sample
    (or, for `sample: all`, compares each page as it comes) and query vectors."""

    def __init__(self, resolved: Resolved, settings: Settings, extras: ExtraPoints) -> None:
        self.resolved = resolved
        self.settings = settings
        self.extras = extras  # struck off as the source maps to them
        self.mapper = Mapper(resolved.job.mapping, resolved.layout)
        residual = resolved.residual_filter
        self.filter = ClientFilter(residual) if residual else None
        self.comparer = _Comparer(resolved)
        self.lock = threading.Lock()
        self.random = random.Random()
        self.selected = 0  # records the job's filter selects now, mappable ones
        self.sample: list[tuple[Record, models.PointStruct]] = []
        self.queries: list[Record] = []

    def run(self, progress_stream: Any) -> None:
        resolved = self.resolved
        state = resolved.state
        if state is not None:
            partitions = state.partitions
        else:
            with before_data_moves(resolved.source):
                partitions = resolved.source.partitions(resolved.job.partition_count)
        total = resolved.info.count if resolved.residual_filter == resolved.job.filter else None
        with (
            Progress(f"verify {resolved.job.name}", total, stream=progress_stream) as progress,
            ThreadPoolExecutor(max(1, resolved.job.parallelism)) as pool,
        ):
            for _ in pool.map(lambda p: self._read(p, progress), partitions):
                pass
        if self.settings.sample is not None:
            self.comparer.compare(self.sample)

    def _read(self, partition: Any, progress: Progress) -> None:
        for page in self.resolved.source.read(partition, None):
            pairs = []
            for record in page.records:
                if self.filter is not None and not self.filter.matches(record):
                    continue
                try:
                    pairs.append((record, self.mapper.to_point(record)))
                except InvalidRecord:
                    continue  # apply set it aside (dead letter) or stopped on it
            with self.lock:
                for pair in pairs:
                    self.selected += 1
                    self._keep(self.queries, pair[0], self.settings.queries)
                    if self.settings.sample is not None:
                        self._keep(self.sample, pair, self.settings.sample)
            self.extras.strike(point.id for _, point in pairs)
            if self.settings.sample is None:
                self.comparer.compare(pairs)
            progress.advance(len(page.records))

    def _keep(self, reservoir: list[Any], item: Any, size: int) -> None:
        """Reservoir sampling: after n items, each is kept with probability size/n."""
        if len(reservoir) < size:
            reservoir.append(item)
            return
        slot = self.random.randrange(self.selected)
        if slot < size:
            reservoir[slot] = item

    def sample_check(self) -> Check:
        comparer = self.comparer
        compared, failed = comparer.compared, comparer.failed
        what = "every record" if self.settings.sample is None else f"a sample of {compared:,}"
        figure = f"{compared - failed:,} of {compared:,} points equal ({what})"
        return Check(
            "sample",
            "fail" if failed else "pass",
            figure,
            comparer.differences,
            {"compared": compared, "different": failed},
        )


# --- counts -------------------------------------------------------------------------------


def _counts(resolved: Resolved, scan: _Scan) -> Check:
    """The count check of apply, plus what the source's filter selects now."""
    state = resolved.state
    target_count = resolved.target.count()
    problems: list[str] = []
    figures: dict[str, Any] = {"source_selected": scan.selected, "target": target_count}
    expected = scan.selected
    if state is not None:
        counts = count_check(resolved, state, resolved.partition_states, save=False)
        problems += counts.problems
        expected -= counts.duplicates
        figures.update(written=counts.total_points, duplicates=counts.duplicates)
        exact = state.target_count_before == 0
    else:
        exact = True
    if exact and target_count != expected:
        problems.append(
            f"the source holds {expected:,} distinct records the job selects, the target "
            f"{target_count:,} points"
        )
    extra = scan.extras.problem()
    if exact and extra:  # else the collection held other points before the job
        problems.append(extra)
    figures.update(extra=len(scan.extras.unmatched), extra_checked=scan.extras.checked)
    figure = (
        f"source {scan.selected:,} records selected by the job; target {target_count:,} points; "
        + scan.extras.figure()
    )
    return Check("counts", "fail" if problems else "pass", figure, problems, figures)


# --- sampled equality ---------------------------------------------------------------------


class _Comparer:
    """Fetches the points of source records from the target and compares them field by field."""

    def __init__(self, resolved: Resolved) -> None:
        self.target = resolved.target
        self.layout = resolved.layout
        self.lock = threading.Lock()
        self.compared = 0
        self.failed = 0
        self.differences: list[str] = []

    def compare(self, pairs: list[tuple[Record, models.PointStruct]]) -> None:
        for start in range(0, len(pairs), FETCH_BATCH):
            batch = pairs[start : start + FETCH_BATCH]
            found = self.target.retrieve([point.id for _, point in batch])
            for record, expected in batch:
                problems = self._differences(expected, found.get(expected.id))
                with self.lock:
                    self.compared += 1
                    if problems:
                        self.failed += 1
                        if len(self.differences) < SHOWN_DIFFERENCES:
                            label = f"point {expected.id!r}"
                            if record.id != expected.id:
                                label += f" (record {record.id!r})"
                            self.differences.append(f"{label}: " + "; ".join(problems))

    def _differences(self, expected: models.PointStruct, actual: Any) -> list[str]:
        if actual is None:
            return ["missing in the target"]
        problems = []
        want = _named(expected.vector)
        have = _named(actual.vector)
        for name, field_ in self.layout.items():
            if name not in want:
                continue
            label = f"vector '{name}'" if name else "the vector"
            if name not in have:
                problems.append(f"{label} missing in the target")
                continue
            problem = _vector_difference(field_, want[name], have[name])
            if problem:
                problems.append(f"{label}: {problem}")
        problems += _payload_differences(expected.payload or {}, actual.payload or {})
        return problems


def _named(vector: Any) -> dict[str, Any]:
    return dict(vector) if isinstance(vector, dict) else {"": vector}


def _vector_difference(field_: VectorField, want: Any, have: Any) -> str | None:
    rtol, atol = TOLERANCE.get(field_.options.get("datatype") or "float32", TOLERANCE["float32"])
    if field_.kind == "sparse":
        want_map = dict(zip(want.indices, want.values, strict=True))
        have_map = dict(zip(have.indices, have.values, strict=True))
        if set(want_map) != set(have_map):
            return (
                f"sparse indices differ: source has {len(want_map)}, target {len(have_map)} "
                f"({len(set(want_map) ^ set(have_map))} not shared)"
            )
        keys = sorted(want_map)
        want, have = [want_map[k] for k in keys], [have_map[k] for k in keys]
        return _dense_difference(np.asarray(want), np.asarray(have), rtol, atol, "values")
    if field_.kind == "multi":
        if len(want) != len(have):
            return f"source has {len(want)} vectors, target {len(have)}"
        want_rows, have_rows = _as_stored(field_, want), _as_stored(field_, have)
        return _dense_difference(want_rows.ravel(), have_rows.ravel(), rtol, atol, "")
    return _dense_difference(
        _as_stored(field_, want)[0], _as_stored(field_, have)[0], rtol, atol, ""
    )


def _as_stored(field_: VectorField, vectors: Any) -> np.ndarray:
    """Rows of vectors as compared: a server stores cosine vectors normalised (local mode
    does not), and only their direction counts, so both sides are normalised."""
    rows = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if field_.distance != "Cosine":
        return rows
    norms = np.linalg.norm(rows, axis=1)
    return rows / np.where(norms == 0, 1.0, norms)[:, None]


def _dense_difference(
    want: np.ndarray, have: np.ndarray, rtol: float, atol: float, what: str
) -> str | None:
    if want.shape != have.shape:
        return f"source has {want.size} {what or 'components'}, target {have.size}"
    close = np.isclose(have, want, rtol=rtol, atol=atol)
    if close.all():
        return None
    first = int(np.argmin(close))
    return (
        f"[{first}] source {want[first]:.6g}, target {have[first]:.6g} "
        f"({int((~close).sum())} of {want.size} differ)"
    )


def _payload_differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    want, have = _plain(want), _plain(have)
    problems = []
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            problems.append(f"payload '{key}' missing in the target")
        elif key not in want:
            problems.append(f"payload '{key}' only in the target")
        elif not _same(want[key], have[key]):
            problems.append(
                f"payload '{key}': source {_short(want[key])}, target {_short(have[key])}"
            )
    return problems


def _same(want: Any, have: Any) -> bool:
    """Equal with the same JSON types: Python finds 2**64 == 2.0**64 and 1 == True, but a
    target holding a float or a boolean where the source had an integer changed it."""
    if type(want) is not type(have):
        return False
    if isinstance(want, dict):
        return want.keys() == have.keys() and all(_same(want[k], have[k]) for k in want)
    if isinstance(want, list):
        return len(want) == len(have) and all(map(_same, want, have))
    return want == have


def _plain(payload: dict[str, Any]) -> dict[str, Any]:
    """JSON values as Qdrant stores them (tuples are lists, keys strings)."""
    return json.loads(json.dumps(payload, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- search agreement ---------------------------------------------------------------------


def _search(resolved: Resolved, settings: Settings, queries: list[Record]) -> Check:
    search = getattr(resolved.source, "search", None)
    source_type = resolved.job.source["type"]
    if search is None:
        return Check("search", "skip", f"the {source_type} source cannot search")
    if resolved.residual_filter is not None:
        return Check(
            "search",
            "skip",
            "part of the job's filter runs client-side, which a source search cannot apply",
        )
    renames = resolved.job.mapping.vectors
    fields = [
        (source_name, target_name)
        for source_name, target_name in (
            (v.name, renames.get(v.name, v.name)) for v in resolved.info.vectors
        )
        if resolved.layout[target_name].kind == "dense"
    ]
    if not fields or not queries:
        return Check("search", "skip", "no dense vector to query, or no record to query with")
    k = settings.top_k
    overlaps: dict[str, list[float]] = {"index": [], "exact": []}
    worst: tuple[float, Any, str] | None = None
    for source_name, target_name in fields:
        for record in queries[: settings.queries]:
            vector = record.vectors.get(source_name)
            if vector is None:
                continue
            vector = list(vector.tolist() if hasattr(vector, "tolist") else vector)
            expected = {point_id(i)[0] for i in search(source_name, vector, k)}
            if not expected:
                continue
            for mode, exact in (("index", False), ("exact", True)):
                found = set(resolved.target.search(target_name, vector, k, exact))
                overlap = len(expected & found) / len(expected)
                overlaps[mode].append(overlap)
                if mode == "index" and (worst is None or overlap < worst[0]):
                    worst = (overlap, record.id, target_name)
    if not overlaps["index"]:
        return Check("search", "skip", "the source returned no results")
    mean = {mode: sum(v) / len(v) for mode, v in overlaps.items()}
    assert worst is not None
    figure = (
        f"mean overlap@{k} {mean['index']:.2f} (exact search {mean['exact']:.2f}) over "
        f"{len(overlaps['index'])} queries; worst {worst[0]:.2f} (record {worst[1]!r}, "
        f"vector '{worst[2]}')"
    )
    problems = []
    if mean["exact"] < settings.min_overlap:
        problems.append(
            f"exact search agrees {mean['exact']:.2f} < {settings.min_overlap}: the data differs"
        )
    elif mean["index"] < settings.min_overlap:
        problems.append(
            f"indexed search agrees {mean['index']:.2f} < {settings.min_overlap} while exact "
            "search agrees: the index is still building, or its settings lose recall"
        )
    figures = {
        "top_k": k,
        "queries": len(overlaps["index"]),
        "mean_overlap": round(mean["index"], 4),
        "mean_overlap_exact": round(mean["exact"], 4),
        "worst_overlap": round(worst[0], 4),
        "worst_record": worst[1],
    }
    return Check("search", "fail" if problems else "pass", figure, problems, figures)


# --- target health ------------------------------------------------------------------------


def _health(resolved: Resolved) -> Check:
    info = resolved.target.existing()
    if info is None:
        return Check("health", "fail", "the target collection does not exist")
    status = getattr(info.status, "value", str(info.status))
    optimizer = info.optimizer_status
    optimizer_ok = getattr(optimizer, "value", optimizer) == "ok"
    points = info.points_count or 0
    indexed = info.indexed_vectors_count or 0
    figures = {"status": status, "points": points, "indexed_vectors": indexed}
    notes = []
    if status in ("yellow", "grey"):
        notes.append(
            f"collection status {status}: optimisation or indexing is still running, so "
            "search agreement may be judged too early"
        )
    if not optimizer_ok:
        notes.append(f"optimizer: {optimizer}")
    figure = f"status {status}; {points:,} points, {indexed:,} vectors indexed"
    return Check("health", "fail" if status == "red" else "pass", figure, notes, figures)


def render_text(report: Report) -> str:
    verdict = "pass" if report.ok else "FAIL"
    failed = sum(1 for c in report.checks if c.status == "fail")
    lines = [
        f"verify {report.job}: {verdict} ({len(report.checks)} checks, {failed} failed) "
        f"in {report.elapsed:.1f}s"
    ]
    for check in report.checks:
        lines.append(f"  {check.name:<7} {check.status:<5} {check.figure}")
        lines += [f"      {difference}" for difference in check.differences]
    return "\n".join(lines)


def render_markdown(reports: list[Report]) -> str:
    """One document for a CI job summary or a PR comment: a table, then the differences."""
    from qmigrate import markdown as md

    marks = {"pass": f"{md.PASS} pass", "fail": f"{md.FAIL} fail", "skip": f"{md.SKIP} skip"}
    sections = []
    for report in reports:
        lines = [md.heading("verify", report.job, report.ok), ""]
        lines += md.table(
            ("check", "result", "figure"),
            ((c.name, marks[c.status], c.figure) for c in report.checks),
        )
        lines += md.bullets(
            "Differences",
            (f"**{c.name}**: {d}" for c in report.checks for d in c.differences),
        )
        sections.append(lines)
    return md.document(sections)
