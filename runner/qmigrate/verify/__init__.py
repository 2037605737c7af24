"""`verify`: prove a migration right by reading both sides, writing to neither.

Four checks: counts (the same count check `apply` ends with), sampled equality (source
records mapped exactly as `apply` maps them, compared with the target's points field by
field), search agreement (top-k on the source and on Qdrant), and target health.

The sample is drawn from one pass over the source's partitions (reservoir sampling, so
memory holds the sample, not the source), which also counts what the job's filter
selects now. `sample: all` compares every record, page by page.
"""

from __future__ import annotations

import time
from typing import Any

from qmigrate.engine import Resolved
from qmigrate.extra_points import ExtraPoints
from qmigrate.verify.report import Check, Report, Settings, render_markdown, render_text
from qmigrate.verify.scan import Scan, counts_check
from qmigrate.verify.target_checks import health_check, search_check

__all__ = ["Check", "Report", "Settings", "render_markdown", "render_text", "verify"]


def verify(resolved: Resolved, settings: Settings, progress_stream: Any = None) -> Report:
    started = time.monotonic()
    scan = Scan(resolved, settings, ExtraPoints(resolved.target, settings.sample))
    scan.run(progress_stream)
    checks = [
        counts_check(resolved, scan),
        scan.sample_check(),
        search_check(resolved, settings, scan.queries),
        health_check(resolved),
    ]
    return Report(resolved.job.name, checks, time.monotonic() - started)
