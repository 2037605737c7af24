"""Sources built from a job's config: the registry's module imported, the schema's defaults
filled in. It needs `spec` (the defaults), and `spec` reads the registry (`sources`) to
build the schema, so it lives apart from the registry, which stays data only."""

from __future__ import annotations

import importlib
from typing import Any

from qmigrate.errors import QmigrateError
from qmigrate.job_schema import source_defaults
from qmigrate.retry import DEFAULT_GIVE_UP_AFTER, request_timeout
from qmigrate.sources import source_type
from qmigrate.sources.base import Source


def create_source(
    config: dict[str, Any], batch_size: int, give_up_after: float = DEFAULT_GIVE_UP_AFTER
) -> Source:
    """Build the source named by `config["type"]`; a missing client library says what to install.

    The source gets its config with the schema's defaults filled in, so defaults live in
    the schema alone, and its request `timeout` held within the job's `give_up_after`
    (`request_timeout`).
    """
    declared = source_type(config["type"])
    try:
        module = importlib.import_module(declared.module)
    except ModuleNotFoundError as exc:
        hint = (
            f"pip install 'qmigrate[{declared.extra}]'"
            if declared.extra
            else "pip install qmigrate"
        )
        raise QmigrateError(
            f"source '{config['type']}' needs the Python package '{exc.name}': run {hint}"
        ) from None
    config = {**source_defaults(config["type"]), **config}
    if "timeout" in config:  # every source with a server has one (a schema default)
        config["timeout"] = request_timeout(config["timeout"], give_up_after)
    return module.Source(config, batch_size)
