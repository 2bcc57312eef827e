"""`retrain check-data`: the ingest parsing, redaction and every suite on a local file, a folder
or an S3 prefix, without training and without writing to the bucket.

Only counts and check names come out (`CheckDataResult`), never a record's text.
"""

from __future__ import annotations

import gzip
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.config import Settings
from tasks.gates.frames import reference_mix
from tasks.gates.suites import evaluate
from tasks.gates.verdict import CheckResult
from tasks.ingest.objects import parse_object_lines, read_object_lines, reason_family
from tasks.ingest.pii import get_redactor
from tasks.storage import layout
from tasks.storage.s3 import list_objects, s3_client, split_s3_uri

SUFFIXES = (".jsonl", ".jsonl.gz")


class CheckDataResult(BaseModel):
    source: str
    objects: int
    records_read: int
    accepted: int
    verdict: str
    blocked: bool
    checks: list[CheckResult]
    failed_block: list[str]
    warnings: list[str]
    quarantine_reasons: dict[str, int]
    pii_redactions: dict[str, int]


class UsageError(ValueError):
    """The source cannot be read as support logs; the message says what to pass instead."""


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if path.is_file():
        if not path.name.endswith(SUFFIXES):
            raise UsageError(f"{path}: expected a .jsonl or .jsonl.gz file (or a folder of them)")
        return [path]
    raise UsageError(f"{path}: no such file or folder; pass a JSONL file, a folder or s3://…")


def source_lines(source: str, settings: Settings) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, lines) for every JSONL object under a local path or an `s3://bucket/prefix`."""
    if source.startswith("s3://"):
        bucket, prefix = split_s3_uri(source)
        client = s3_client(settings.s3)
        keys = [
            o["Key"] for o in list_objects(client, bucket, prefix) if o["Key"].endswith(SUFFIXES)
        ]
        if not keys:
            raise UsageError(f"{source}: no .jsonl or .jsonl.gz objects under this prefix")
        for key in keys:
            yield layout.s3_uri(bucket, key), read_object_lines(client, bucket, key)
        return
    files = _local_files(Path(source))
    if not files:
        raise UsageError(f"{source}: the folder holds no .jsonl or .jsonl.gz files")
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            yield str(path), iter(handle.readlines())


def load_reference(source: str, settings: Settings) -> Any:
    """Category mix of support logs or golden-set chat examples (with `metadata.category`)."""
    import json

    rows = [
        json.loads(line)
        for _, lines in source_lines(source, settings)
        for line in lines
        if line.strip()
    ]
    return reference_mix(rows)


def check_data(source: str, settings: Settings, reference: str | None = None) -> CheckDataResult:
    parsed: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    objects = 0
    for name, lines in source_lines(source, settings):
        objects += 1
        for kind, row in parse_object_lines(lines, name):
            if kind == "ok":
                parsed.append(row)
            else:
                reasons[reason_family(row["reason"])] += 1
    redactions: Counter[str] = Counter()
    accepted = []
    for clean, reason in get_redactor(settings.pii).redact_records(parsed, redactions):
        if clean is None:
            reasons[reason_family(str(reason))] += 1
        else:
            accepted.append(clean)
    mix = load_reference(reference, settings) if reference else None
    quarantined = sum(reasons.values())
    with tempfile.TemporaryDirectory() as docs:
        report = evaluate(
            accepted, settings.quality, quarantined, mix, Path(docs), settings.pii.allow_list
        )
    return CheckDataResult(
        source=source,
        objects=objects,
        records_read=len(accepted) + quarantined,
        accepted=len(accepted),
        verdict=report.verdict,
        blocked=bool(report.failed_critical),
        checks=report.checks,
        failed_block=report.failed_critical,
        warnings=report.warnings,
        quarantine_reasons=dict(reasons),
        pii_redactions=dict(redactions),
    )
