"""`python -m bench`: every local source, raw and through qmigrate, in one run (issue 12).

For each source (bench/sources.py) it loads the same data set and times, each step a child
process measured by the kernel (wall, CPU user + system, peak RSS), as medians of --runs:
  (a) read     the native client reads every record, nothing else
  (b) write    qdrant-client upserts the same points alone (wait=True) to the sink over REST
               and gRPC, and to local mode in memory and on disk; once, since every source holds
               the same points
  (c) qmigrate `qmigrate apply` into the sink (gRPC) at parallelism 1 and each --parallelism
  (d) loop     the reference tool's shape: read a page, convert, upsert(wait=True) to the
               sink (gRPC), one sequential loop
  (e) vdf-io   export_vdf then import_vdf into the sink, from its own venv (--vdf-python),
               where it supports the pair, with what it lost
Ratios are of wall time, with c at its best parallelism: c/a, c/b and c/max(a,b) (issue
12 wants about 1, at most 1.10), d/c and e/c (wants 2 and 3 or more); and of client CPU,
c/d (wants 0.5 or less). --write regenerates the section of bench/BENCHMARKS.md.

    python -m bench --points 100000 --dim 768 --runs 3 --sources file chroma redis milvus \
        --writes rest grpc --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import REPO, Usage, cpu_seconds, run_child_usage, running_sink
from bench.sources import SOURCES
from qmigrate.sources import source_type

BEGIN, END = "<!-- python -m bench: begin -->", "<!-- python -m bench: end -->"
VDF_RUN = (  # its CLI prints an error and exits 0; without the span, errors exit 1
    "import sys, vdf_io.scripts.check_for_updates as c; c.check_for_updates = lambda: None; "
    "from opentelemetry.trace import INVALID_SPAN; which = sys.argv.pop(1); "
    "from vdf_io.export_vdf_cli import run_export; from vdf_io.import_vdf_cli import run_import; "
    "(run_export if which == 'export' else run_import)(INVALID_SPAN)"
)  # and not asking PyPI for a newer vdf-io after each run
VDF_ENV = {
    "DISABLE_TELEMETRY_VECTORIO": "1",
    "HF_HUB_OFFLINE": "1",
    "PYTHONPATH": "",
    "QDRANT_API_KEY": "",
}

NAN = float("nan")


@dataclass
class Row:
    """Medians over the runs of one step."""

    wall: float
    cpu: float
    rss_kib: int
    note: str = ""
    sink_cpu: float = NAN  # the sink's CPU meanwhile: the server's share of a write

    def cells(self, points: int) -> str:
        if self.wall != self.wall:  # not run
            return "– | – | – | – | –"
        return (
            f"{self.wall:.2f} | {points / self.wall:,.0f} | {self.cpu / points * 1e6:,.0f} | "
            f"{self.sink_cpu / points * 1e6:,.0f} | {self.rss_kib / 1024:,.0f}"
        )


NOT_RUN = Row(NAN, NAN, 0)


def medians(samples: list[tuple[float, float, int, float]], note: str = "") -> Row:
    wall, cpu, rss, sink = (statistics.median(column) for column in zip(*samples, strict=True))
    return Row(wall, cpu, int(rss), note, sink)


class Bench:
    """One run of the harness: the data set, the sink, and the child processes it times."""

    def __init__(
        self, args: argparse.Namespace, root: Path, rest: int, grpc: int, sink_pid: int
    ) -> None:
        self.args, self.root, self.sink_pid = args, root, sink_pid
        self.rest_url = f"http://127.0.0.1:{rest}"
        self.sink_grpc = {"url": self.rest_url, "grpc_port": grpc, "prefer_grpc": True}
        self.sink_rest = {"url": self.rest_url, "prefer_grpc": False}

    def repeat(self, step: Callable[[str], Usage]) -> Row:
        """`step(tag)` --runs times, each with a tag of its own for fresh collection names;
        what a step says in `failure` (vdf-io: what it lost) becomes the row's note."""
        samples, notes = [], set()
        for run in range(self.args.runs):
            sink_before = cpu_seconds(self.sink_pid)
            usage = step(f"{os.getpid()}-{run}")
            samples.append(
                (usage.wall, usage.cpu, usage.rss_kib, cpu_seconds(self.sink_pid) - sink_before)
            )
            if usage.failure:
                notes.add(usage.failure)
        return medians(samples, "; ".join(sorted(notes)))

    def child(self, step: str, **arguments: Any) -> Usage:
        command = [sys.executable, "-m", "bench.steps", step, json.dumps(arguments)]
        usage = run_child_usage(command, cwd=REPO)
        assert int(usage.out) == self.args.points, (step, usage.out)
        return usage

    def raw_write(self) -> dict[str, Row]:
        """(b), once: the same points from `vectors.npy` to each target."""
        targets = {
            "sink REST": self.sink_rest,
            "sink gRPC": self.sink_grpc,
            "local memory": {"location": ":memory:"},
            "local disk": {},
        }
        rows = {}
        for name, target in targets.items():
            if name.split()[-1].lower() not in self.args.writes:
                continue

            def write(tag: str, target: dict[str, Any] = target, name: str = name) -> Usage:
                tag = f"{name.replace(' ', '-')}-{tag}"
                where = target or {"path": str(self.root / f"disk-{tag}")}
                return self.child(
                    "write", root=str(self.root), target=where, collection=f"b-{tag}", **self.io
                )

            rows[f"(b) write, {name}"] = self.repeat(write)
        return rows

    @property
    def io(self) -> dict[str, Any]:
        return {"batch": self.args.batch, "dim": self.args.dim}

    def source(self, name: str, conn: dict[str, Any]) -> dict[str, Row]:
        source = SOURCES[name]
        rows = {
            "(a) read": self.repeat(
                lambda tag: self.child("read", source=name, conn=conn, **self.io)
            )
        }
        for p in sorted({1, *self.args.parallelism}):
            rows[f"(c) qmigrate p={p}"] = self.repeat(
                lambda tag, p=p: self.qmigrate(name, conn, p, tag)
            )
        config = source.job(conn)["source"]
        for w in self.args.workers:
            if source_type(config["type"]).owned_by_one_process(config):
                refused = "not run: one process must own this source (the executor refuses it)"
                rows[f"(c) qmigrate processes w={w}"] = Row(NAN, NAN, 0, refused)
                continue
            rows[f"(c) qmigrate processes w={w}"] = self.repeat(
                lambda tag, w=w: self.qmigrate(name, conn, 1, tag, workers=w)
            )
        rows["(d) loop"] = self.repeat(
            lambda tag: self.child(
                "loop",
                source=name,
                conn=conn,
                target=self.sink_grpc,
                collection=f"d-{name}-{tag}",
                **self.io,
            )
        )
        if isinstance(source.vdf, str):
            rows["(e) vdf-io"] = Row(NAN, NAN, 0, f"not run: {source.vdf}")
        elif not Path(self.args.vdf_python).exists():
            missing = f"not run: no vdf-io venv at {self.args.vdf_python} (--vdf-python)"
            rows["(e) vdf-io"] = Row(NAN, NAN, 0, missing)
        else:
            rows["(e) vdf-io"] = self.repeat(
                lambda tag: self.vdf(source.vdf(conn), f"{name}-{tag}")
            )
        return rows

    def qmigrate(
        self, name: str, conn: dict[str, Any], parallelism: int, tag: str, workers: int = 0
    ) -> Usage:
        """(c): `apply` on threads (`parallelism`), or on `workers` processes (as many
        partitions, one each)."""
        label = f"w{workers}" if workers else str(parallelism)
        document: dict[str, Any] = {
            "version": 1,
            "name": f"c-{name}-{label}-{tag}",
            **SOURCES[name].job(conn),
            "target": {**self.sink_grpc, "collection": f"c-{name}-{label}-{tag}"},
            "batch_size": self.args.batch,
            "parallelism": parallelism,
        }
        if workers:
            document["executor"] = {"type": "processes", "workers": workers}
        job = self.root / f"{document['name']}.json"
        job.write_text(json.dumps(document))
        return run_child_usage([sys.executable, "-m", "qmigrate", "apply", str(job)])

    def vdf(self, export_args: list[str], tag: str) -> Usage:
        """(e) export_vdf into a directory, then import_vdf of it into the sink (REST: its CLI
        cannot name a gRPC port); its `failure` says how it ended and what reached the sink."""
        from qdrant_client import QdrantClient

        python = self.args.vdf_python
        work = self.root / f"vdf-{tag}"
        work.mkdir()
        out = run_child_usage(
            [python, "-c", VDF_RUN, "export", *export_args], work, VDF_ENV, check=False
        )
        if out.failure:  # nothing moved: no time to compare
            return Usage(NAN, NAN, out.rss_kib, "", f"export_vdf failed: {out.failure}")
        (exported,) = work.glob("vdf_*")
        sink = QdrantClient(url=self.rest_url)
        before = {c.name for c in sink.get_collections().collections}
        command = [python, "-c", VDF_RUN, "import", "--dir", str(exported), "--create_new"]
        command += ["--batch_size", str(self.args.batch), "qdrant", "--url", self.rest_url]
        into = run_child_usage([*command, "--prefer_grpc", ""], work, VDF_ENV, check=False)
        created = {c.name for c in sink.get_collections().collections} - before
        received = sum(sink.count(name).count for name in created)
        sink.close()
        lost = self.args.points - received
        note = f"{lost:,} points lost" if lost else "no point lost"
        if into.failure:
            note = f"import_vdf failed ({into.failure}) after upserting; {note}"
        note += describe(exported)
        wall, cpu, rss = out.wall + into.wall, out.cpu + into.cpu, max(out.rss_kib, into.rss_kib)
        return Usage(wall, cpu, rss, "", note)


def describe(exported: Path) -> str:
    """What vdf-io's export kept of the records: its Parquet rows and columns."""
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(f) for f in exported.rglob("*.parquet")]
    rows = sum(f.metadata.num_rows for f in files)
    columns = sorted({name for f in files for name in f.schema_arrow.names})
    return f"; exported {rows:,} rows, columns: {', '.join(columns)}"


def report(
    args: argparse.Namespace, writes: dict[str, Row], per_source: dict[str, dict[str, Row]]
) -> str:
    """The Markdown section: command, machine, one table, the ratios."""
    command = "python -m bench " + " ".join(sys.argv[1:])
    lines = [
        f"```\n{command}\n```",
        "",
        f"{args.points:,} points x {args.dim} float32, batch {args.batch}, median of "
        f"{args.runs}; machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, shared with other work while this ran.",
        "",
        "| source | step | wall s | points/s | client CPU µs/point | sink CPU µs/point "
        "| peak RSS MiB | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in writes.items():
        lines.append(f"| (all) | {name} | {row.cells(args.points)} | |")
    ratios = [
        "",
        "| source | c/a | c/b | c/max(a,b) | d/c | e/c | CPU c/d | best p |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    write = writes.get("(b) write, sink gRPC", NOT_RUN).wall
    for source, rows in per_source.items():
        lines += [
            f"| {source} | {name} | {row.cells(args.points)} | {row.note} |"
            for name, row in rows.items()
        ]
        best_name = min((n for n in rows if n.startswith("(c)")), key=lambda n: rows[n].wall)
        best, read, loop = rows[best_name], rows["(a) read"].wall, rows["(d) loop"]
        values = (
            best.wall / read, best.wall / write, best.wall / max(read, write),
            loop.wall / best.wall, rows["(e) vdf-io"].wall / best.wall, best.cpu / loop.cpu,
        )  # fmt: skip
        cells = [f"{v:.2f}" if v == v else "–" for v in values]
        if "points lost" in rows["(e) vdf-io"].note:
            cells[4] += " (moved less)"  # a ratio of times that did not do the same job
        ratios.append(f"| {source} | {' | '.join(cells)} | {best_name.split('=')[1]} |")
    return "\n".join(lines + ratios)


def write_section(text: str) -> None:
    """Regenerate the harness's section of bench/BENCHMARKS.md (between its markers)."""
    path = REPO / "bench" / "BENCHMARKS.md"
    document = path.read_text()
    head, rest = document.split(BEGIN)
    _, tail = rest.split(END)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[2])
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[], help="(c) rows on the process executor"
    )
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    writes = ["rest", "grpc", "memory", "disk"]  # disk: ~1,000 points/s, minutes at 100k a run
    parser.add_argument("--writes", nargs="+", choices=writes, default=writes, help="(b) targets")
    parser.add_argument("--vdf-python", default="/work/vdf-venv/bin/python")
    parser.add_argument("--write", action="store_true", help="regenerate BENCHMARKS.md's section")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="qmigrate-bench-"))
    try:
        vectors = np.random.default_rng(0).uniform(-1, 1, (args.points, args.dim)).astype("f4")
        np.save(root / "vectors.npy", vectors)
        per_source: dict[str, dict[str, Row]] = {}
        with running_sink() as (rest, grpc, sink_pid):
            bench = Bench(args, root, rest, grpc, sink_pid)
            writes = bench.raw_write()
            for name in args.sources:
                with SOURCES[name].start(root) as conn:
                    print(f"loading {name} ...", file=sys.stderr, flush=True)
                    SOURCES[name].load(conn, vectors)
                    per_source[name] = bench.source(name, conn)
                print(report(args, writes, {name: per_source[name]}), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = report(args, writes, per_source)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
