"""Small boto3 helpers shared by every stage: a client, JSON/JSONL objects, conditional writes.

These are plain functions, not Prefect tasks: each stage's task wraps the I/O it owns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from tasks.config import S3Settings
from tasks.storage.aws_session import aws_session
from tasks.storage.layout import s3_uri


class ConcurrentUpdateError(RuntimeError):
    """A conditional write lost a race: someone else changed the object first."""


@dataclass(frozen=True)
class VersionedJson:
    """A JSON object read together with the ETag that a conditional write must match."""

    body: Any
    etag: str | None  # None: the object does not exist yet


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key-or-prefix` → (bucket, key); the key may be empty (`s3://bucket`)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    return bucket, key


def s3_client(s3: S3Settings) -> Any:
    """A boto3 S3 client for the configured endpoint, with standard retries on throttling,
    signing with the configured credentials (tasks/storage/aws_session.py)."""
    return aws_session(s3).client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def ensure_bucket(client: Any, bucket: str) -> None:
    """Create the bucket if it does not exist (the demo and tests start from an empty store)."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
        client.create_bucket(Bucket=bucket)


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under `prefix`, in key order, as list_objects_v2 returns them."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _encode_json(body: Any) -> bytes:
    return json.dumps(body, indent=2, sort_keys=True, default=str).encode()


def put_json(client: Any, bucket: str, key: str, body: Any) -> str:
    """Write a JSON document; returns its ETag."""
    response = client.put_object(
        Bucket=bucket, Key=key, Body=_encode_json(body), ContentType="application/json"
    )
    return response["ETag"]


def get_json(client: Any, bucket: str, key: str) -> VersionedJson:
    """Read a JSON document and its ETag; a missing object reads as (None, None)."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return VersionedJson(body=None, etag=None)
        raise
    return VersionedJson(body=json.loads(response["Body"].read()), etag=response["ETag"])


def encode_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """Rows as JSON Lines bytes (UTF-8, one object per line)."""
    return "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows).encode()


def put_jsonl(client: Any, bucket: str, key: str, rows: Iterable[dict[str, Any]]) -> str:
    """Write rows as JSON Lines; returns the ETag."""
    response = client.put_object(
        Bucket=bucket, Key=key, Body=encode_jsonl(rows), ContentType="application/x-ndjson"
    )
    return response["ETag"]


def put_bytes_if(client: Any, bucket: str, key: str, data: bytes, expected_etag: str | None) -> str:
    """Write an object only if it is still as we read it; returns the new ETag.

    `expected_etag=None` means "only if it does not exist yet" (If-None-Match: *); otherwise the
    write succeeds only if the stored ETag still matches (If-Match). Losing the race raises
    ConcurrentUpdateError instead of silently overwriting another run's update.
    """
    condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=data, **condition)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise ConcurrentUpdateError(
                f"{s3_uri(bucket, key)} changed while this run was updating it; "
                "another run is probably active. Re-run once it has finished."
            ) from error
        raise
    return response["ETag"]


def put_json_if(client: Any, bucket: str, key: str, body: Any, expected_etag: str | None) -> str:
    """put_json with the If-Match / If-None-Match semantics of put_bytes_if."""
    return put_bytes_if(client, bucket, key, _encode_json(body), expected_etag)


def get_jsonl(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """Read a JSON Lines object written by put_jsonl."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


def upload_dir(client: Any, local_dir: Path, bucket: str, prefix: str) -> list[str]:
    """Upload every file under local_dir to prefix, keeping relative paths; returns the keys."""
    keys = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(local_dir).as_posix()
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def safe_local_path(local_dir: Path, relative_key: str) -> Path:
    """Where an object key (relative to a listed prefix) lands under local_dir.

    A key is data from S3, not a trusted path: one with an empty, `.` or `..` part, a leading
    `/` or a backslash is refused, so no object can write outside local_dir.
    """
    parts = relative_key.split("/")
    if (
        not relative_key
        or relative_key.startswith("/")
        or "\\" in relative_key
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(
            f"refusing S3 key part {relative_key!r}: it is not a plain relative path and could "
            f"escape {local_dir}; remove or rename that object"
        )
    root = local_dir.resolve()
    target = (root / relative_key).resolve()
    if not target.is_relative_to(root):  # a symlink inside local_dir could still point out
        raise ValueError(f"refusing S3 key part {relative_key!r}: it resolves outside {root}")
    return target


def download_prefix(client: Any, bucket: str, prefix: str, local_dir: Path) -> Path:
    """Download every object under prefix into local_dir, keeping relative paths.

    Every key is checked before any file is written (see safe_local_path).
    """
    targets = [
        (obj["Key"], safe_local_path(local_dir, obj["Key"][len(prefix) :]))
        for obj in list_objects(client, bucket, prefix)
    ]
    for key, target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
    return local_dir
