"""Batches of support logs for drift checks: a local file or folder, an S3 prefix, the recent
window of raw logs, or the data the champion was trained on.

Reading here never touches the ingest watermark: the monitor only looks. Records are parsed
with ingest's own contract (`parse_object_lines`), so a line the retrain flow would quarantine
is not counted here either; rejected lines are counted, never copied.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.config import S3Settings, Settings
from tasks.ingest.objects import parse_object_lines
from tasks.storage import layout
from tasks.storage.s3 import get_json, list_objects, s3_client, split_s3_uri

LOG_SUFFIXES = (".jsonl", ".jsonl.gz")
PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/")


class Batch(BaseModel):
    """Parsed records of one batch and where they came from."""

    source: str
    records: list[dict[str, Any]]
    rejected: int
    objects: int


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from gzip.GzipFile(fileobj=handle) if path.name.endswith(".gz") else handle


def _parse(named_streams: Iterator[tuple[str, Iterator[bytes]]], source: str) -> Batch:
    records, rejected, objects = [], 0, 0
    for name, lines in named_streams:
        objects += 1
        for kind, row in parse_object_lines(lines, name):
            if kind == "ok":
                records.append(row)
            else:
                rejected += 1
    return Batch(source=source, records=records, rejected=rejected, objects=objects)


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(LOG_SUFFIXES))
    raise FileNotFoundError(
        f"{path} does not exist: pass a .jsonl/.jsonl.gz file, a folder of them, or s3://bucket/prefix"
    )


def _s3_streams(client: Any, bucket: str, keys: list[str]) -> Iterator[tuple[str, Iterator[bytes]]]:
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        lines = (
            gzip.GzipFile(fileobj=body) if key.endswith(".gz") else body.iter_lines(keepends=True)
        )
        yield key, lines


def read_batch(source: str, s3: S3Settings) -> Batch:
    """Records from a local .jsonl(.gz) file, a folder of them, or every log under s3://bucket/prefix."""
    if source.startswith("s3://"):
        bucket, prefix = split_s3_uri(source)
        client = s3_client(s3)
        keys = [
            o["Key"]
            for o in list_objects(client, bucket, prefix)
            if o["Key"].endswith(LOG_SUFFIXES)
        ]
        return _parse(_s3_streams(client, bucket, keys), source)
    files = _local_files(Path(source))
    return _parse(((str(f), _file_lines(f)) for f in files), source)


def recent_window(settings: Settings, now: datetime) -> Batch:
    """Raw logs with a timestamp in the last `drift.window_hours` before `now`.

    Objects are picked by their `dt=YYYY-MM-DD/` partition (or all when a key has none), then
    records by their own timestamp, so late-arriving files still count.
    """
    s3 = settings.s3
    start = now - timedelta(hours=settings.drift.window_hours)
    client = s3_client(s3)
    keys = []
    for obj in list_objects(client, s3.bucket, s3.raw_prefix):
        key, match = obj["Key"], PARTITION.search(obj["Key"])
        if key.endswith(LOG_SUFFIXES) and (not match or match.group(1) >= f"{start:%Y-%m-%d}"):
            keys.append(key)
    batch = _parse(_s3_streams(client, s3.bucket, keys), layout.raw_uri(s3))
    in_window = [r for r in batch.records if start <= _timestamp(r) <= now]
    return batch.model_copy(update={"records": in_window})


def _timestamp(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["timestamp"]).astimezone(UTC)


def training_batch(settings: Settings, card: dict[str, Any]) -> Batch:
    """The raw logs the champion's dataset was built from (card lineage → dataset manifest)."""
    s3 = settings.s3
    client = s3_client(s3)
    manifest_key = layout.in_prefix(card["lineage"]["dataset_prefix"], layout.DATASET_MANIFEST)
    manifest = get_json(client, s3.bucket, manifest_key).body
    if manifest is None:
        raise FileNotFoundError(
            f"{layout.uri(s3, manifest_key)} is missing: the champion's training data cannot be "
            "found; set `drift.reference` to a batch to compare with"
        )
    keys = [source["key"] for source in manifest["sources"]]
    return _parse(_s3_streams(client, s3.bucket, keys), layout.uri(s3, manifest_key))
