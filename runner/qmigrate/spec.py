"""Job files: YAML text -> Jinja2 rendering -> JSON Schema validation -> a typed `Job`.

The schema (schemas/) is the contract: `job_schema` reads it, `validation` reports what
breaks it, with lines; this module turns a valid document into a `Job`, its defaults
taken from the schema.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dotenv
import dotenv.parser

from qmigrate.errors import invalid
from qmigrate.job_schema import declared_defaults, with_defaults
from qmigrate.records import IndexSpec
from qmigrate.redaction import is_secret_key, without_credentials
from qmigrate.retry import request_timeout
from qmigrate.sources import REGISTRY
from qmigrate.templating import render
from qmigrate.validation import parse, validation_errors

# --- typed job --------------------------------------------------------------------------


_TARGET = declared_defaults("target")
_MAPPING = declared_defaults("mapping")
_EXECUTOR = declared_defaults("executor")


@dataclass(frozen=True)
class TargetSpec:
    collection: str
    path: str | None = None
    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool | None = None  # None: gRPC where the server offers it
    grpc_port: int = _TARGET["grpc_port"]
    timeout: float = _TARGET["timeout"]
    in_flight: int = _TARGET["in_flight"]
    on_missing: str = _TARGET["on_missing"]
    on_existing: str = _TARGET["on_existing"]  # overwrite | keep (insert-only writes)
    alias: str | None = None  # what `cutover` points at the collection
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    sparse_vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    hnsw: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    shards: int | None = None
    replication_factor: int | None = None
    shard_key: dict[str, Any] | None = None  # {value: KEY} or {field: PATH}: custom sharding
    on_disk_payload: bool | None = None
    payload_storage: dict[str, Any] | None = None
    id_tracker: dict[str, Any] | None = None
    payload_indexes: dict[str, IndexSpec] = field(default_factory=dict)
    bulk_load: bool = _TARGET["bulk_load"]


@dataclass(frozen=True)
class MappingSpec:
    keep_original_id_as: str | None = _MAPPING["id"]["keep_original_as"]
    vectors: dict[str, str] = field(default_factory=dict)
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutorSpec:
    """Where partitions run: threads here (local), processes here, or tasks on a Ray cluster."""

    type: str = _EXECUTOR["type"]
    workers: int | None = None
    address: str = _EXECUTOR["address"]
    tasks: int | None = None
    num_cpus_per_task: float = _EXECUTOR["num_cpus_per_task"]


@dataclass(frozen=True)
class Job:
    name: str
    file: Path
    source: dict[str, Any]
    target: TargetSpec
    mapping: MappingSpec
    filter: dict[str, Any] | None
    batch_size: int
    parallelism: int
    restart: str
    checkpoint_store: str
    checkpoint_path: Path
    lease_seconds: float
    on_invalid: str
    dead_letter_path: Path
    on_duplicate: str
    verify: dict[str, Any]
    document: dict[str, Any]
    # The source's local paths as absolute, real paths, resolved when the job is loaded.
    source_paths: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None
    executor: ExecutorSpec = ExecutorSpec()
    give_up_after: float = declared_defaults("retry")["give_up_after"]
    # sync.changed_field: a source field holding a modification time or increasing version.
    sync_changed_field: str | None = None

    @property
    def concurrency(self) -> int:
        """Partitions moved at once: Ray tasks on a cluster, worker processes, or threads."""
        if self.executor.type == "ray":
            return self.executor.tasks or self.parallelism
        if self.executor.type == "processes":
            return self.executor.workers or os.cpu_count() or 1
        return self.parallelism

    @property
    def partition_count(self) -> int:
        """What a new run asks the source for; a resumed run keeps its saved partitions, so
        `partitions` is not part of the fingerprint."""
        return self.partitions or self.concurrency

    def fingerprint_parts(self) -> dict[str, str]:
        """A short hash per part of the job that decides which points are written and how:
        `source.<key>`, `target.collection`, `target.shard_key` (when set), `mapping.<key>`,
        `filter`. Stored with the
        checkpoints, so a refusal can say what changed without storing any value.

        Connection details (named by the source's registry entry) are left out, and no
        credential enters in any form (secret keys, URL user info and secret parameters are
        taken out first: a stored hash of a password can be tested against guesses), so
        rotating a key does not invalidate checkpoints. Where the data lives (url host,
        path) stays in: a new place may hold other data. Paths count as absolute, real
        paths, so the directory a job is applied from does not matter.
        """
        declared = REGISTRY[self.source["type"]]
        parts: dict[str, Any] = {
            f"source.{key}": self.source_paths.get(key, without_credentials(value))
            for key, value in self.source.items()
            if not is_secret_key(key) and not declared.ignored_by_fingerprint(key)
        }
        parts["target.collection"] = self.target.collection
        if self.target.shard_key is not None:  # which shard each point went to
            parts["target.shard_key"] = self.target.shard_key
        for key, value in self.document.get("mapping", {}).items():
            parts[f"mapping.{key}"] = value
        parts["filter"] = self.filter
        return {key: _short_hash(value) for key, value in sorted(parts.items())}

    def fingerprint(self) -> str:
        """Hash of the whole job as far as it decides what is written: a change refuses resume."""
        return _short_hash(self.fingerprint_parts())


def with_executor(
    job: Job, kind: str | None, address: str | None, workers: int | None = None
) -> Job:
    """The job with the command line's --executor, --ray-address and --workers over its
    executor key."""
    executor = job.executor
    if kind is not None:
        executor = dataclasses.replace(executor, type=kind)
    if address is not None:
        if executor.type != "ray":
            raise invalid("--ray-address needs --executor ray (or executor.type: ray in the job)")
        executor = dataclasses.replace(executor, address=address)
    if workers is not None:
        if workers < 1:
            raise invalid(f"--workers: at least 1 (got {workers})")
        if executor.type != "processes":
            raise invalid(
                "--workers needs --executor processes (or executor.type: processes in the job)"
            )
        executor = dataclasses.replace(executor, workers=workers)
    return dataclasses.replace(job, executor=executor)


def _short_hash(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _job_from_document(document: dict[str, Any], file: Path) -> Job:
    """The typed job; every default comes from the schema (`with_defaults`), and `document`
    stays as written for the fingerprint."""
    filled = with_defaults(document)
    target = dict(filled["target"])
    mapping = filled["mapping"]
    payload = mapping.get("payload", {})
    include = payload.get("include")
    checkpoint = filled["checkpoint"]
    on_invalid = filled["on_invalid"]
    name = filled["name"]
    give_up_after = filled["retry"]["give_up_after"]
    target["timeout"] = request_timeout(target["timeout"], give_up_after)
    return Job(
        name=name,
        file=file,
        source=filled["source"],
        target=TargetSpec(**target),
        mapping=MappingSpec(
            keep_original_id_as=mapping["id"]["keep_original_as"],
            vectors=mapping.get("vectors", {}),
            include=tuple(include) if include is not None else None,
            exclude=tuple(payload.get("exclude", ())),
            rename=payload.get("rename", {}),
            set=payload.get("set", {}),
        ),
        filter=filled.get("filter"),
        batch_size=filled["batch_size"],
        parallelism=filled["parallelism"],
        restart=filled["restart"],
        checkpoint_store=checkpoint["store"],
        checkpoint_path=Path(checkpoint.get("path", f".qmigrate/{name}.checkpoint.json")),
        lease_seconds=checkpoint["lease_seconds"],
        on_invalid=on_invalid["action"],
        dead_letter_path=Path(on_invalid.get("path", f"{name}.dead-letter.jsonl")),
        on_duplicate=filled["on_duplicate"],
        verify=filled["verify"],
        source_paths={
            key: os.path.realpath(filled["source"][key])
            for key in REGISTRY[filled["source"]["type"]].path_keys
            # a URI (LanceDB's s3://...) is no local path
            if isinstance(filled["source"].get(key), str) and "://" not in filled["source"][key]
        },
        document=document,
        partitions=filled.get("partitions"),
        executor=ExecutorSpec(**filled["executor"]),
        give_up_after=give_up_after,
        sync_changed_field=(filled.get("sync") or {}).get("changed_field"),
    )


# --- loading ----------------------------------------------------------------------------


def job_files(paths: Iterable[str]) -> list[Path]:
    """Expand FILE|DIR arguments: a directory means its *.yaml/*.yml files in name order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not found:
                raise invalid(f"{path}: no *.yaml job files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise invalid(f"{path}: no such file or directory")
    return files


def read_env_file(path: str) -> dict[str, str]:
    """A .env file, read by python-dotenv's parser (quotes, `export`, # comments, ${VAR});
    a line it cannot parse is an error that names it. A bare KEY sets nothing."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise invalid(f"--env-file {path}: {exc.strerror}") from None
    for binding in dotenv.parser.parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line + binding.original.string[:-1].count("\n")
            raise invalid(f"{path}:{line}: expected KEY=VALUE")
    values = dotenv.dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


def load(file: Path, env: Mapping[str, str] | None = None) -> Job:
    """Render, parse and validate one job file; raise with every error at once."""
    rendered = render(file, os.environ if env is None else env)
    data, node = parse(file, rendered)
    errors = validation_errors(data, node, file)
    if errors:
        raise invalid("\n".join(errors))
    return _job_from_document(data, file)
