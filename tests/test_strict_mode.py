"""Strict mode on the Qdrant target: its limits read from the collection and obeyed.

The REST and gRPC stand-ins keep each collection's `strict_mode_config` and answer as
Qdrant does (status codes and messages read from its code), so a request over a limit
shows up as a refusal the stand-in recorded. The write rate runs on a virtual clock shared
by qmigrate's throttle and the stand-in's rate limiter: the rate is kept exactly, and
checked, without any test waiting for it. The contract test against a real server (when
QDRANT_URL is set) is in tests/sources/test_qdrant.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client import grpc as pb

from qmigrate import cli, retry, strict_mode
from qmigrate.strict_mode import StrictMode, StrictWrites, WriteThrottle
from tests.conftest import run_job
from tests.servers.qdrant_grpc import running_both
from tests.servers.qdrant_rest import Store

TRANSPORTS = pytest.mark.parametrize("use_grpc", [False, True], ids=["rest", "grpc"])


class VirtualClock(strict_mode.Clock):
    """Time that passes only when the throttle sleeps."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.slept = 0.0
        self.lock = threading.Lock()

    def now(self) -> float:
        with self.lock:
            return self.time

    def sleep(self, seconds: float, stop: threading.Event | None) -> bool:
        with self.lock:
            self.time += seconds
            self.slept += seconds
        return False


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, int, Store]]:
    with running_both() as both:
        yield both


@pytest.fixture
def clock(
    stand_in: tuple[str, int, Store], monkeypatch: pytest.MonkeyPatch
) -> Iterator[VirtualClock]:
    """The one clock of qmigrate's throttle and of the stand-in's rate limiters."""
    virtual = VirtualClock()
    monkeypatch.setattr(strict_mode, "CLOCK", virtual)
    store = stand_in[2]
    store.clock = virtual.now
    yield virtual
    store.clock = time.monotonic


def strict_collection(url: str, name: str, held: int = 0, **limits: Any) -> models.StrictModeConfig:
    """A collection of 2-d vectors holding `held` points, with strict mode on, made over
    REST as a user would."""
    client = QdrantClient(url=url, prefer_grpc=False, check_compatibility=False)
    config = models.StrictModeConfig(enabled=True, **limits)
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
        strict_mode_config=config,
    )
    if held:
        points = [models.PointStruct(id=10_000 + i, vector=[1.0, 0.0]) for i in range(held)]
        client.upsert(name, points)
    client.close()
    return config


def job(
    tmp_path: Path,
    stand_in: tuple[str, int, Store],
    name: str,
    rows: int,
    text: str = "",
    **extra: Any,
) -> dict[str, Any]:
    url, grpc_port, _ = stand_in
    data = tmp_path / "rows.jsonl"
    data.write_text(
        "".join(json.dumps({"id": i, "v": [1.0, float(i)], "t": text}) + "\n" for i in range(rows))
    )
    return {
        "version": 1,
        "name": name,
        "source": {"type": "file", "path": str(data), "vectors": {"v": {"distance": "dot"}}},
        "target": {"url": url, "grpc_port": grpc_port, "collection": name},
        "mapping": {"vectors": {"v": ""}},
        **extra,
    }


def data_upserts(store: Store, since: int) -> list[list[Any]]:
    return [ids for _, ids in store.data_upserts[since:]]


# --- the requests sent --------------------------------------------------------------------


@TRANSPORTS
def test_requests_stay_within_the_batch_limit_and_the_write_rate(
    tmp_path: Path, stand_in: tuple[str, int, Store], clock: VirtualClock, use_grpc: bool
) -> None:
    url, _, store = stand_in
    name = f"rate_{uuid.uuid4().hex[:8]}"
    strict_collection(url, name, upsert_max_batchsize=5, write_rate_limit=40)
    before, refused = len(store.data_upserts), len(store.refused)
    # A broken throttle would wait for ever on the virtual clock: it fails in 20 s instead.
    document = job(
        tmp_path, stand_in, name, 50, batch_size=8, parallelism=2, retry={"give_up_after": 20}
    )
    document["target"] |= {"prefer_grpc": use_grpc, "in_flight": 2}
    summary = run_job(document, tmp_path)
    assert (summary.count_check, summary.written, summary.retries) == ("ok", 50, 0)
    sent = data_upserts(store, before)
    assert sent and max(len(ids) for ids in sent) <= 5, "upsert_max_batchsize is 5"
    assert sorted(i for ids in sent for i in ids) == list(range(50))
    assert store.refused[refused:] == [], "no request over a limit: no 400, no 429"
    # The bucket held 40 points; the other 10 came at no more than 40 a minute.
    assert clock.slept >= 10 / 40 * 60


@TRANSPORTS
def test_a_collection_the_run_creates_gets_the_servers_default_strict_mode(
    tmp_path: Path, stand_in: tuple[str, int, Store], clock: VirtualClock, use_grpc: bool
) -> None:
    """Strict mode is read at the first write, so a server's default for new collections
    (storage.collection.strict_mode) is obeyed too; with custom sharding each key's group
    is cut to the batch limit."""
    _, _, store = stand_in
    name = f"default_{uuid.uuid4().hex[:8]}"
    store.default_strict_mode = {"enabled": True, "upsert_max_batchsize": 4, "write_rate_limit": 20}
    before, refused = len(store.data_upserts), len(store.refused)
    try:
        document = job(tmp_path, stand_in, name, 30, batch_size=8, retry={"give_up_after": 20})
        document["target"] |= {"prefer_grpc": use_grpc, "shard_key": {"value": "eu"}}
        summary = run_job(document, tmp_path)
    finally:
        store.default_strict_mode = None
    assert (summary.count_check, summary.written, summary.retries) == ("ok", 30, 0)
    sent = data_upserts(store, before)
    assert sent and max(len(ids) for ids in sent) <= 4
    assert store.refused[refused:] == []
    assert store.shard_keys[name] == ["eu"]
    assert clock.slept >= 10 / 20 * 60, "the 10 points past the bucket at 20 a minute"


@TRANSPORTS
def test_a_429_from_the_rate_limit_is_retried_after_retry_after(
    tmp_path: Path, stand_in: tuple[str, int, Store], use_grpc: bool
) -> None:
    """Another writer emptied the server's bucket just before the first upsert: Qdrant
    answers 429 "Retry after 1s" (REST header, gRPC trailing metadata). Waiting that long
    refills 10 tokens; a retry sooner (the backoff's first is under 0.4 s) would be refused
    again."""
    url, _, store = stand_in
    name = f"retry_{uuid.uuid4().hex[:8]}"
    strict_collection(url, name, write_rate_limit=600)
    bucket = store.buckets[name]
    consume = bucket.consume
    emptied: list[bool] = []

    def emptied_once(cost: int) -> None:
        if not emptied:
            emptied.append(True)
            bucket.tokens, bucket.since = 0.0, store.clock()
        consume(cost)

    bucket.consume = emptied_once  # type: ignore[method-assign]
    refused = len(store.refused)
    document = job(tmp_path, stand_in, name, 6, batch_size=6, parallelism=1)
    document["target"] |= {"prefer_grpc": use_grpc, "in_flight": 1}
    summary = run_job(document, tmp_path)
    assert (summary.count_check, summary.written, summary.retries) == ("ok", 6, 1)
    assert store.refused[refused:] == [
        (
            429,
            "Rate limiting exceeded: Write rate limit exceeded: Operation requires 6 tokens "
            "but only 0.0 were available. Retry after 1s",
        )
    ]


def test_a_retry_after_of_up_to_a_minute_is_waited_in_full() -> None:
    """Qdrant's write rate limiter asks up to 60 s (its bucket holds a minute's worth): the
    backoff's own cap of 30 s must not cut it short, or the retry is refused again."""

    class Waits(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[float | None] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.asked.append(timeout)
            return False

    class RateLimited(Exception):
        retry_after_s = 57

    waits = Waits()
    backoff = retry.Backoff("writing", give_up_after=300, stop=waits)
    backoff.began()
    assert backoff.failed(RateLimited())
    assert waits.asked == [57]


def test_retry_after_is_read_from_grpc_trailing_metadata(
    stand_in: tuple[str, int, Store],
) -> None:
    """A plain gRPC error (no qdrant-client interceptor in between) carries it too."""
    url, grpc_port, store = stand_in
    name = f"raw_{uuid.uuid4().hex[:8]}"
    strict_collection(url, name, write_rate_limit=1)
    point = pb.PointStruct(
        id=pb.PointId(num=1),
        vectors=pb.Vectors(vector=pb.Vector(dense=pb.DenseVector(data=[1.0, 0.0]))),
    )
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb.PointsStub(channel)
        stub.Upsert(pb.UpsertPoints(collection_name=name, points=[point], wait=True))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Upsert(pb.UpsertPoints(collection_name=name, points=[point], wait=True))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry.is_transient(caught.value)
    assert retry.retry_after(caught.value) == 60.0  # one token a minute, none left


def test_qdrants_own_request_size_answer_splits_the_batch(
    tmp_path: Path, stand_in: tuple[str, int, Store]
) -> None:
    """Over service.max_request_size_mb Qdrant answers 400 "JSON payload ... is larger than
    allowed", not 413: the batch goes in halves all the same."""
    url, _, store = stand_in
    name = f"size_{uuid.uuid4().hex[:8]}"
    store.max_request_bytes = 3000  # a 32-point batch is about 5 kB of JSON
    try:
        document = job(tmp_path, stand_in, name, 64, "x" * 100, batch_size=32, parallelism=1)
        document["target"] |= {"prefer_grpc": False, "in_flight": 1}
        before = len(store.data_upserts)
        summary = run_job(document, tmp_path)
    finally:
        store.max_request_bytes = None
    assert (summary.count_check, summary.written, summary.retries) == ("ok", 64, 0)
    assert max(len(ids) for ids in data_upserts(store, before)) < 32


# --- refused before data moves -------------------------------------------------------------


def plan_of(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    cli.main(["plan", str(path), "--output", "json"])
    return dict(json.loads(capsys.readouterr().out)["jobs"][0])


@pytest.mark.parametrize(
    ("limits", "refusal"),
    [
        (
            {"max_points_count": 20},
            "the source's 30 records and the 5 points it held before the job make up to 35 "
            "points, above its strict mode max_points_count of 20",
        ),
        (
            {"max_collection_vector_size_bytes": 200},
            "up to 35 points of at least 8 bytes of vectors each need 280 bytes, above its "
            "strict mode max_collection_vector_size_bytes of 200",
        ),
    ],
    ids=["points", "vector-bytes"],
)
def test_a_job_that_cannot_fit_is_refused_in_plan_and_apply_with_the_numbers(
    tmp_path: Path,
    stand_in: tuple[str, int, Store],
    capsys: pytest.CaptureFixture[str],
    limits: dict[str, int],
    refusal: str,
) -> None:
    url, _, store = stand_in
    name = f"full_{uuid.uuid4().hex[:8]}"
    strict_collection(url, name, held=5, **limits)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(tmp_path, stand_in, name, 30)))
    plan = plan_of(path, capsys)
    assert plan["refusals"] == [f"target collection '{name}': {refusal}"]
    assert plan["target"]["strict_mode"] == StrictMode(**limits).describe()
    before = len(store.data_upserts)
    assert cli.main(["apply", str(path)]) == 1
    assert refusal in capsys.readouterr().err
    assert store.data_upserts[before:] == [] and store.count(name) == 5, "nothing written"
    # A job that fits is not refused: 15 records and 5 points make 20 (160 bytes).
    path.write_text(yaml.safe_dump(job(tmp_path, stand_in, name, 15)))
    assert plan_of(path, capsys)["refusals"] == []


def test_plan_says_which_limits_apply(
    tmp_path: Path, stand_in: tuple[str, int, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = stand_in
    name = f"said_{uuid.uuid4().hex[:8]}"
    strict_collection(url, name, upsert_max_batchsize=100, write_rate_limit=60)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(tmp_path, stand_in, name, 3)))
    capsys.readouterr()
    assert cli.main(["plan", str(path)]) == 0
    assert (
        "    strict mode: upsert_max_batchsize 100: at most 60 points a request; "
        "write_rate_limit 60/min: writes throttled to it, at most 60 points a request"
    ) in capsys.readouterr().out.splitlines()


# --- the stand-ins answer as Qdrant does ---------------------------------------------------


@TRANSPORTS
def test_the_stand_ins_refuse_as_qdrant_does(
    stand_in: tuple[str, int, Store], use_grpc: bool
) -> None:
    """Without qmigrate in between: the shapes (StrictModeConfig in, StrictModeConfigOutput
    in the collection info) and each refusal's status and text."""
    url, grpc_port, _ = stand_in
    name = f"raw_{uuid.uuid4().hex[:8]}"
    client = QdrantClient(
        url=url, grpc_port=grpc_port, prefer_grpc=use_grpc, check_compatibility=False
    )
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
        strict_mode_config=models.StrictModeConfig(enabled=True, upsert_max_batchsize=3),
    )
    client.update_collection(
        name, strict_mode_config=models.StrictModeConfig(write_rate_limit=4, max_points_count=4)
    )
    config = client.get_collection(name).config.strict_mode_config
    assert config is not None
    assert (config.enabled, config.upsert_max_batchsize, config.write_rate_limit) == (True, 3, 4)

    def points(*ids: int) -> list[models.PointStruct]:
        return [models.PointStruct(id=i, vector=[1.0, 0.0]) for i in ids]

    def refusal(*ids: int) -> tuple[Any, str, float | None]:
        with pytest.raises(Exception) as caught:
            client.upsert(name, points(*ids))
        return _answer(caught.value, use_grpc)

    bad_request = 400 if not use_grpc else "INVALID_ARGUMENT"
    assert refusal(1, 2, 3, 4) == (
        bad_request,
        'Bad request: Limit exceeded 4 > 3 for "upsert limit". '
        'Help: Reduce the "upsert limit" parameter to or below 3.',
        None,
    )
    client.upsert(name, points(1, 2, 3))
    assert refusal(4, 5) == (  # one token in 15 s: Retry-After in whole seconds
        429 if not use_grpc else "RESOURCE_EXHAUSTED",
        "Rate limiting exceeded: Write rate limit exceeded: Operation requires 2 tokens but "
        "only 1.0 were available. Retry after 15s",
        15.0,
    )
    client.update_collection(
        name, strict_mode_config=models.StrictModeConfig(upsert_max_batchsize=10)
    )  # a new limiter, full again: a request over its 4 points never passes
    assert refusal(4, 5, 6, 7, 8) == (
        429 if not use_grpc else "RESOURCE_EXHAUSTED",
        "Rate limiting exceeded: Write rate limit exceeded, request larger than rate limiter "
        "capacity, please try to split your request",
        None,
    )
    client.upsert(name, points(4))
    assert refusal(5) == (bad_request, "Bad request: Max points count limit of 4 reached!", None)
    client.close()


def _answer(exc: BaseException, use_grpc: bool) -> tuple[Any, str, float | None]:
    """(HTTP status or gRPC code, Qdrant's message, Retry-After) of a failed call, however
    qdrant-client raised it (a 429 with Retry-After is its ResourceExhaustedResponse)."""
    asked = retry.retry_after(exc)
    if asked is not None and getattr(exc, "retry_after_s", None) is not None:
        return "RESOURCE_EXHAUSTED" if use_grpc else 429, str(exc), asked
    content = getattr(exc, "content", None)
    if isinstance(content, bytes):
        return retry.http_status(exc), json.loads(content)["status"]["error"], asked
    return retry.grpc_code(exc), exc.details(), asked  # type: ignore[attr-defined]


# --- the pieces ---------------------------------------------------------------------------


def test_the_throttle_is_one_bucket_of_a_minutes_points_that_starts_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(strict_mode, "CLOCK", clock)
    throttle = WriteThrottle(120, clock=clock)
    assert throttle.take(120) == 0.0, "full at the start, like Qdrant's"
    waited = throttle.take(19)
    assert waited == pytest.approx(19 / (2 * strict_mode.RATE_MARGIN), abs=0.002)
    assert throttle.take(500) > 0, "more than the bucket holds waits for a full bucket"
    assert WriteThrottle(120, share=4).capacity == 30, "processes share the limit"
    shared = StrictWrites(StrictMode(upsert_max_batchsize=64, write_rate_limit=120), share=4)
    assert shared.size == 30, "a process's request fits its share of the bucket"
    assert [len(r) for r in shared.requests(list(range(70)), None)] == [30, 30, 10]
    assert clock.slept > 0, "the second request waited for its tokens"


def test_the_most_points_a_request_carries() -> None:
    assert StrictMode(upsert_max_batchsize=64, write_rate_limit=30).points_per_request == 30
    assert StrictMode(upsert_max_batchsize=64).points_per_request == 64
    assert StrictMode(max_points_count=5).points_per_request is None
    info = models.CollectionInfo.model_validate(
        {
            "status": "green",
            "optimizer_status": "ok",
            "segments_count": 1,
            "payload_schema": {},
            "config": {
                "params": {
                    "vectors": {
                        "a": {"size": 4, "distance": "Dot", "datatype": "float16"},
                        "b": {"size": 3, "distance": "Dot"},
                    }
                },
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10},
                "optimizer_config": {
                    "deleted_threshold": 0.2,
                    "vacuum_min_vector_number": 1000,
                    "default_segment_number": 0,
                    "flush_interval_sec": 5,
                },
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "strict_mode_config": {"enabled": False, "max_points_count": 1},
            },
        }
    )
    assert strict_mode.vector_bytes_per_point(info) == 4 * 2 + 3 * 4
    assert StrictMode.of(info) is None, "a strict mode switched off limits nothing"
