"""No credential reaches a fingerprint or a checkpoint, in any form: a stored hash of a
password can be tested against guesses by anyone who can read the target."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmigrate import spec
from qmigrate.redaction import without_credentials
from tests.conftest import run_cli
from tests.servers.redis import running_redis

# Fingerprints of credential-free jobs as qmigrate wrote them before credentials were
# taken out of URLs (computed with main at ae35456): checkpoints written then must resume.
CREDENTIAL_FREE = {
    "redis": ({"url": "redis://127.0.0.1:6379/0", "index": "products"}, "60b18402e309904f"),
    "qdrant": ({"url": "http://127.0.0.1:6333", "collection": "products"}, "f9d0cc6d13596616"),
    "milvus": ({"uri": "http://127.0.0.1:19530", "collection": "products"}, "e4dab21a25d34c8c"),
    "pinecone": (
        {
            "api_key": "pk-123456",
            "index": "products",
            "host": "https://products-abc.svc.pinecone.io",
        },
        "9ae4b9f7baebeab7",
    ),
    "chroma": (
        {"url": "http://127.0.0.1:8000", "collection": "docs", "token": "tok-123456"},
        "76830252b632134c",
    ),
}


def load(tmp_path: Path, source: dict[str, Any], name: str = "job.yaml") -> spec.Job:
    document = {
        "version": 1,
        "name": "demo",
        "source": source,
        "target": {"url": "http://127.0.0.1:6333", "collection": "demo"},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return spec.load(path, {})


def old_short_hashes(value: str) -> set[str]:
    """Every hash the old fingerprint code could have stored of `value`."""
    encoded = json.dumps(value).encode()
    full = hashlib.sha256(encoded).hexdigest()
    bare = hashlib.sha256(value.encode()).hexdigest()
    return {full, full[:16], bare, bare[:16]}


@pytest.mark.parametrize("source_type", sorted(CREDENTIAL_FREE))
def test_credential_free_fingerprints_are_unchanged(tmp_path: Path, source_type: str) -> None:
    config, fingerprint = CREDENTIAL_FREE[source_type]
    assert load(tmp_path, {"type": source_type, **config}).fingerprint() == fingerprint


@pytest.mark.parametrize(
    ("written", "stripped"),
    [
        ("redis://user:S3cretPW@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:S3cretPW@127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("http://user@host:6333/x", "http://host:6333/x"),
        (
            "https://host/db?password=S3cretPW&sslmode=require&api_key=K3y&token=T0k",
            "https://host/db?sslmode=require",
        ),
        ("http://host/?apiKey=S3cretPW", "http://host/"),
        (
            "host=db port=5432 user=app password='S3 cret\\'PW' dbname=items",
            "host=db port=5432 dbname=items",
        ),
        ("host=db dbname=items", "host=db dbname=items"),
        ("a plain value = not a dsn", "a plain value = not a dsn"),
    ],
)
def test_credentials_are_taken_out_of_values(written: str, stripped: str) -> None:
    assert without_credentials(written) == stripped
    nested = {"options": {"secret_key": "S3cretPW", "url": written}, "list": [written]}
    assert without_credentials(nested) == {
        "options": {"url": stripped},
        "list": [stripped],
    }


@pytest.mark.parametrize(
    ("source_type", "key", "template", "other_host"),
    [
        ("redis", "url", "redis://user:{}@127.0.0.1:6379/0", "redis://user:{}@10.0.0.9:6379/0"),
        ("milvus", "uri", "http://root:{}@127.0.0.1:19530", "http://root:{}@127.0.0.2:19530"),
        ("qdrant", "url", "http://127.0.0.1:6333?api_key={}", "http://127.0.0.3:6333?api_key={}"),
    ],
)
def test_rotating_a_password_keeps_the_fingerprint_moving_the_host_does_not(
    tmp_path: Path, source_type: str, key: str, template: str, other_host: str
) -> None:
    extra = {"index": "i"} if source_type == "redis" else {"collection": "c"}

    def job(url: str) -> spec.Job:
        return load(tmp_path, {"type": source_type, key: url, **extra})

    first = job(template.format("S3cretPW"))
    parts = json.dumps(first.fingerprint_parts())
    for hashed in old_short_hashes(template.format("S3cretPW")) | old_short_hashes("S3cretPW"):
        assert hashed not in parts
    assert first.fingerprint() == job(template.format("An0therPW")).fingerprint()
    assert first.fingerprint() != job(other_host.format("S3cretPW")).fingerprint()


@pytest.mark.parametrize("store", ["target", "file"])
def test_checkpoints_hold_no_form_of_the_password(tmp_path: Path, store: str) -> None:
    pytest.importorskip("redis")
    numpy = pytest.importorskip("numpy")
    password, rotated = "S3cretPW-fp", "R0tatedPW-fp"
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis", password=password) as server:
        client = server.client()
        client.execute_command(
            "FT.CREATE", "items", "ON", "HASH", "PREFIX", "1", "item:", "SCHEMA",
            "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
        )  # fmt: skip
        for i in range(5):
            client.hset(f"item:{i}", mapping={"v": numpy.array([i, 1], "<f4").tobytes()})
        url = f"redis://user:{password}@127.0.0.1:{server.port}/0"
        client.execute_command("ACL", "SETUSER", "user", "on", f">{password}", "~*", "+@all")

        def apply(source_url: str) -> Any:
            document = {
                "version": 1,
                "name": "secret-test",
                "source": {"type": "redis", "url": source_url, "index": "items"},
                "target": {"path": str(tmp_path / "t"), "collection": "copy"},
                "checkpoint": {"store": store, "path": str(tmp_path / "ckpt.json")},
            }
            (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
            return run_cli("apply", "job.yaml", cwd=tmp_path)

        first = apply(url)
        assert first.code == 0, first.stderr
        written_by_qmigrate = [tmp_path / "t", tmp_path / "ckpt.json"]
        stored = b"".join(
            path.read_bytes()
            for where in written_by_qmigrate
            for path in [where, *where.rglob("*")]
            if path.is_file()
        )
        assert b"_migration_offsets" in stored or store == "file"
        assert b"fingerprint_parts" in stored, "the checkpoint was read where it lies"
        for form in {password, url, f"user:{password}"}:
            assert form.encode() not in stored
            for hashed in old_short_hashes(form):
                assert hashed.encode() not in stored, form

        client.execute_command("ACL", "SETUSER", "user", "resetpass", f">{rotated}")
        rotated_url = url.replace(password, rotated)
        again = apply(rotated_url)
        assert again.code == 0, again.stderr + again.stdout
        assert "changed" not in again.stderr + again.stdout

        moved = apply(rotated_url.replace("127.0.0.1", "localhost"))
        assert moved.code == 1, moved.stderr + moved.stdout
        assert "changed: source.url" in moved.stderr + moved.stdout


def test_query_and_dsn_secrets_are_masked_in_output() -> None:
    from qmigrate.redaction import forget_secrets, redact, remember_secrets

    forget_secrets()
    remember_secrets({"url": "http://h:6333/?api_key=Qu3ryK3y", "dsn": "host=h password=Dsn5ecret"})
    assert (
        redact("at http://h:6333/?api_key=Qu3ryK3y and Dsn5ecret")
        == "at http://h:6333/?api_key=*** and ***"
    )
