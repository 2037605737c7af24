"""The checks that ask the target: search agreement with the source, and the collection's health."""

from __future__ import annotations

from typing import Any

import numpy as np

from qmigrate.engine import Resolved
from qmigrate.mapping import point_id
from qmigrate.records import Record
from qmigrate.verify.report import Check, Settings


def search_check(resolved: Resolved, settings: Settings, queries: list[Record]) -> Check:
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
            values = record.vectors.get(source_name)
            if not isinstance(values, (list, np.ndarray)):  # a dense vector's, or none
                continue
            vector: list[float] = np.asarray(values, dtype=np.float64).tolist()
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


def health_check(resolved: Resolved) -> Check:
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
