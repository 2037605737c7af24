"""What verify found: its settings, one Check per question, the Report, and how they print."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Settings:
    sample: int | None  # None: every record
    queries: int
    top_k: int
    min_overlap: float

    @classmethod
    def of(cls, job_section: dict[str, Any], overrides: dict[str, Any]) -> Settings:
        """The job's `verify:` section, with command-line values winning."""
        values = dict(job_section)  # the schema's defaults filled in (spec.with_defaults)
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
