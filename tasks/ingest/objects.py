"""Ingest: find new support-log objects in S3, parse them, redact personal data, quarantine what
breaks the contract.

Redaction happens here, before anything is written: the only place raw text lives is `raw/`.
A record that breaks the contract (or that the redactor cannot handle) goes to
`quarantine/<run-id>/rejected.jsonl` as a pointer to its source (`s3://` URI, line, ETag) with
its reason and a redacted preview, never a raw copy; the rest of its file is still processed.
The watermark under `state/` remembers which objects
(key + ETag) were processed, so a re-uploaded object is read again and an unchanged one never.

    retrain run        # ingest is the first stage of every run
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import task
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.config import Settings
from tasks.storage import layout
from tasks.storage.s3 import get_json, list_objects, put_json_if, put_jsonl, s3_client, split_s3_uri

WATERMARK_KEY = layout.WATERMARK  # the watermark object's name under the state prefix
JSON_PUNCTUATION = re.compile(r'[{}\[\]"]')


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["customer", "agent", "system"]
    text: str = Field(min_length=1)


class SupportLogRecord(BaseModel):
    """The support-log contract (docs/design.md). Unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    conversation_id: str = Field(min_length=1)
    timestamp: AwareDatetime
    messages: list[Message]
    channel: str | None = None
    language: str | None = None
    intent: str | None = None
    category: str | None = None
    segments: list[str] = Field(default_factory=list)
    resolved: bool | None = None
    csat: int | None = Field(None, ge=1, le=5)

    @model_validator(mode="after")
    def _has_both_sides(self) -> SupportLogRecord:
        roles = {m.role for m in self.messages if m.text.strip()}
        if not {"customer", "agent"} <= roles:
            raise ValueError("needs at least one customer and one agent message with text")
        return self


class ObjectRef(BaseModel):
    key: str
    etag: str
    size: int


class NewObjects(BaseModel):
    """Objects not yet in the watermark, and the watermark's ETag to commit against."""

    objects: list[ObjectRef]
    watermark_etag: str | None


class IngestResult(BaseModel):
    records_read: int
    accepted: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    staging_key: str
    quarantine_key: str | None
    pii_redactions: dict[str, int] = Field(default_factory=dict)


def _reason(error: ValidationError) -> str:
    """A one-line reason naming the first offending field."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "record"
    message = first["msg"].removeprefix("Value error, ")
    return f"`{field}`: {message}"


def parse_line(raw: bytes) -> SupportLogRecord | str:
    """One JSONL line → a record, or the reason it was rejected."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"invalid UTF-8 at byte {error.start}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return f"malformed JSON: {error.msg} (column {error.colno})"
    if not isinstance(value, dict):
        return f"JSON value is a {type(value).__name__}, not an object"
    try:
        return SupportLogRecord.model_validate(value)
    except ValidationError as error:
        return _reason(error)


def _quarantine_row(key: str, line: int | None, reason: str, raw: bytes = b"") -> dict[str, Any]:
    """`raw` stays in memory only: `ingest_objects` swaps it for a redacted preview."""
    return {
        "source_key": key,
        "line": line,
        "reason": reason,
        "raw": raw.decode("utf-8", errors="backslashreplace"),
    }


def _stored_rows(
    rows: list[dict[str, Any]], bucket: str, etags: dict[str, str], settings: Settings
) -> list[dict[str, Any]]:
    """Quarantine rows as stored: source pointer + reason + redacted preview, no raw text."""
    from tasks.ingest.pii import get_redactor

    limit = settings.pii.preview_chars
    # Redact more than is shown, so a value cut by the preview boundary was still seen whole.
    # JSON punctuation out first: a name right after `"` reads to NER like a quoted label
    raws = [JSON_PUNCTUATION.sub(" ", row.pop("raw", "")[: limit * 4]) for row in rows]
    previews = get_redactor(settings.pii).redact_texts(raws) if any(raws) else raws
    return [
        {
            **row,
            "source": layout.s3_uri(bucket, row["source_key"]),
            "etag": etags.get(row["source_key"]),
            "preview": preview[:limit],
        }
        for row, preview in zip(rows, previews, strict=True)
    ]


def parse_object_lines(
    lines: Iterable[bytes], key: str
) -> Iterator[tuple[Literal["ok"], dict[str, Any]] | tuple[Literal["bad"], dict[str, Any]]]:
    """Parse one object's lines. Yields ("ok", record) or ("bad", quarantine row).

    Blank lines carry nothing and are skipped; an object with no records at all, or a
    compressed stream that breaks off, yields one quarantine row saying so.
    """
    seen_any = False
    line_no = 0
    try:
        for line_no, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            seen_any = True
            parsed = parse_line(raw.rstrip(b"\r\n"))
            if isinstance(parsed, str):
                yield "bad", _quarantine_row(key, line_no, parsed, raw.rstrip(b"\r\n"))
            else:
                record = parsed.model_dump(mode="json", exclude_none=True)
                yield "ok", {**record, "_source": {"key": key, "line": line_no}}
    except (OSError, EOFError, zlib.error) as error:
        yield "bad", _quarantine_row(key, line_no + 1, f"unreadable after line {line_no}: {error}")
        return
    if not seen_any:
        yield "bad", _quarantine_row(key, None, "empty object: no records")


def read_object_lines(client: Any, bucket: str, key: str) -> Iterator[bytes]:
    """Stream an object's lines, gunzipping `.gz` on the fly (never held whole in memory)."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    if key.endswith(".gz"):
        yield from gzip.GzipFile(fileobj=body)
    else:
        yield from body.iter_lines(keepends=True)


def reprocess_keys(uris: list[str], bucket: str) -> set[str]:
    """`s3://bucket/raw/...` URIs (or bare keys) → keys in our bucket; anything else is a
    usage error with the fix in the message."""
    keys = set()
    for uri in uris:
        if uri.startswith("s3://"):
            named_bucket, key = split_s3_uri(uri)
            if named_bucket != bucket:
                raise ValueError(
                    f"--reprocess {uri}: the object is not in the configured bucket {bucket!r}; "
                    "set `s3.bucket` or pass a URI in that bucket"
                )
            keys.add(key)
        else:
            keys.add(uri)
    return keys


@task(retries=2, retry_delay_seconds=10)
def find_new_objects(settings: Settings, reprocess: list[str] | None = None) -> NewObjects:
    """List raw objects whose key + ETag the watermark has not seen, plus the objects named in
    `reprocess` (re-run on purpose, e.g. after a threshold or suite change)."""
    s3 = settings.s3
    client = s3_client(s3)
    forced = reprocess_keys(reprocess or [], s3.bucket)
    watermark = get_json(client, s3.bucket, layout.watermark_key(s3))
    processed: dict[str, str] = (watermark.body or {}).get("processed", {})
    objects = [
        ObjectRef(key=obj["Key"], etag=obj["ETag"], size=obj["Size"])
        for obj in list_objects(client, s3.bucket, s3.raw_prefix)
        if obj["Key"].endswith((".jsonl", ".jsonl.gz"))
        and (processed.get(obj["Key"]) != obj["ETag"] or obj["Key"] in forced)
    ]
    missing = forced - {o.key for o in objects}
    if missing:
        raise ValueError(
            f"--reprocess: no such object under {layout.raw_uri(s3)}: {', '.join(sorted(missing))}"
        )
    return NewObjects(objects=objects, watermark_etag=watermark.etag)


@task(retries=2, retry_delay_seconds=10)
def ingest_objects(settings: Settings, objects: list[ObjectRef], run_id: str) -> IngestResult:
    """Parse and redact every new object; redacted records go to staging, rejected ones to
    quarantine (as pointers to their source line)."""
    from tasks.ingest.pii import get_redactor

    s3 = settings.s3
    client = s3_client(s3)
    parsed: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for obj in objects:
        for kind, row in parse_object_lines(read_object_lines(client, s3.bucket, obj.key), obj.key):
            (parsed if kind == "ok" else rejected).append(row)

    redactions: Counter[str] = Counter()
    accepted: list[dict[str, Any]] = []
    for record, (redacted, reason) in zip(
        parsed, get_redactor(settings.pii).redact_records(parsed, redactions), strict=True
    ):
        if redacted is not None:
            accepted.append(redacted)
        else:
            source = record["_source"]
            rejected.append(_quarantine_row(source["key"], source["line"], str(reason)))

    staging_key = layout.staging_key(s3, run_id)
    put_jsonl(client, s3.bucket, staging_key, accepted)
    quarantine_key = None
    if rejected:
        quarantine_key = layout.quarantine_key(s3, run_id, "rejected")
        etags = {obj.key: obj.etag for obj in objects}
        put_jsonl(
            client, s3.bucket, quarantine_key, _stored_rows(rejected, s3.bucket, etags, settings)
        )
    return IngestResult(
        records_read=len(accepted) + len(rejected),
        accepted=len(accepted),
        quarantined=len(rejected),
        quarantine_reasons=dict(Counter(reason_family(r["reason"]) for r in rejected)),
        staging_key=staging_key,
        quarantine_key=quarantine_key,
        pii_redactions=dict(redactions),
    )


def reason_family(reason: str) -> str:
    """Group reasons for reporting ("malformed JSON: ..." → "malformed JSON")."""
    return reason.split(":")[0] if not reason.startswith("`") else reason


@task
def commit_watermark(
    settings: Settings,
    new: NewObjects,
    verdict: str = "accepted",
    run_id: str | None = None,
    failed_checks: list[str] | None = None,
) -> None:
    """Record the objects as processed, with the gate's verdict (`accepted` / `rejected`) and
    for a rejection the failed checks, so an operator sees why an object was not trained on.

    The write is conditional on the watermark being as find_new_objects read it, so two runs
    that raced over the same logs cannot both advance it: the loser fails with
    ConcurrentUpdateError and its objects are simply picked up again by the next run.
    """
    s3 = settings.s3
    client = s3_client(s3)
    key = layout.watermark_key(s3)
    current = get_json(client, s3.bucket, key)
    processed = dict((current.body or {}).get("processed", {}))
    processed.update({obj.key: obj.etag for obj in new.objects})
    verdicts = dict((current.body or {}).get("verdicts", {}))
    now = datetime.now(UTC).isoformat()
    for obj in new.objects:
        verdicts[obj.key] = {
            "etag": obj.etag,
            "verdict": verdict,
            "run_id": run_id,
            "failed_checks": failed_checks or [],
            "at": now,
        }
    body = {"processed": processed, "verdicts": verdicts, "updated_at": now}
    put_json_if(client, s3.bucket, key, body, expected_etag=new.watermark_etag)
