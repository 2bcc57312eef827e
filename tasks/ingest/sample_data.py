"""Sample data: turn the Bitext customer-support CSV into daily support-log objects in S3.

The CSV (CDLA-Sharing-1.0, see resources/bitext/LICENSE.txt) has no timestamps, so its rows are
shuffled once with a fixed seed and spread evenly over `days` days ending on `end_date`. Each
day becomes one gzipped JSONL object under `raw/support-logs/dt=YYYY-MM-DD/`.

    retrain seed --days 7
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from tasks.config import S3Settings
from tasks.storage import layout
from tasks.storage.s3 import ensure_bucket, s3_client

# Bitext's `tags` letters → readable segment names (see resources/bitext/README.md).
BITEXT_TAGS = {
    "B": "basic",
    "I": "interrogative",
    "C": "coordinated",
    "L": "lexical_variation",
    "M": "morphological_variation",
    "N": "negation",
    "E": "expanded_abbreviation",
    "Q": "colloquial",
    "P": "polite",
    "W": "offensive",
    "Z": "typos",
    "K": "keyword_only",
}
CHANNELS = ("chat", "email", "web_form")

# Lines that break the contract in the ways real exports do; `--bad-records` mixes them in so
# a demo shows quarantine at work.
BAD_LINES = (
    b'{"conversation_id": "broken-1", "timestamp": "2026-11-21T10:00:00Z", "messages": [',
    b'{"conversation_id": "no-agent", "timestamp": "2026-11-21T10:00:00Z", '
    b'"messages": [{"role": "customer", "text": "hello?"}]}',
    b'{"timestamp": "2026-11-21T10:00:00Z", "messages": []}',
    b'["not", "an", "object"]',
    b'{"conversation_id": "latin1", "text": "caf\xe9"}',
    b'{"conversation_id": "naive-ts", "timestamp": "yesterday", "messages": []}',
)


def bundled_csv() -> Path:
    """The Bitext CSV shipped inside the package."""
    return Path(str(resources.files("tasks") / "resources/bitext/bitext_customer_support_6480.csv"))


def row_to_record(index: int, row: dict[str, str], at: datetime) -> dict[str, Any]:
    """One Bitext row → one support-log record (the contract in docs/design.md)."""
    return {
        "conversation_id": f"bitext-{index:05d}",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "channel": CHANNELS[index % len(CHANNELS)],
        "language": "en",
        "messages": [
            {"role": "customer", "text": row["instruction"]},
            {"role": "agent", "text": row["response"]},
        ],
        "intent": row["intent"],
        "category": row["category"],
        "segments": [BITEXT_TAGS[t] for t in row["tags"] if t in BITEXT_TAGS],
        "source": "bitext",
    }


def build_daily_logs(
    csv_path: Path, days: int, end_date: date, limit: int | None = None, seed: int = 7
) -> dict[date, list[dict[str, Any]]]:
    """Spread the CSV's rows over `days` days ending on end_date, in timestamp order per day."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    order = order[:limit] if limit else order
    per_day: dict[date, list[dict[str, Any]]] = {}
    for position, index in enumerate(order):
        day = end_date - timedelta(days=days - 1 - position % days)
        seconds = (position // days * 37) % 86_400  # spread within the day, deterministically
        at = datetime.combine(day, time(), tzinfo=UTC) + timedelta(seconds=seconds)
        per_day.setdefault(day, []).append(row_to_record(index, rows[index], at))
    for records in per_day.values():
        records.sort(key=lambda r: r["timestamp"])
    return per_day


def _gzip_jsonl(records: list[dict[str, Any]], extra_lines: tuple[bytes, ...] = ()) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records] + list(extra_lines)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(b"\n".join(lines) + b"\n")
    return buffer.getvalue()


def upload_daily_logs(
    s3: S3Settings,
    per_day: dict[date, list[dict[str, Any]]],
    bad_records: int = 0,
) -> list[str]:
    """Upload one gzipped JSONL object per day; the first day gets `bad_records` broken lines."""
    client = s3_client(s3)
    ensure_bucket(client, s3.bucket)
    keys = []
    for n, day in enumerate(sorted(per_day)):
        extra = tuple(BAD_LINES[i % len(BAD_LINES)] for i in range(bad_records)) if n == 0 else ()
        key = layout.raw_key(s3, day, f"support-logs-{day.isoformat()}.jsonl.gz")
        client.put_object(Bucket=s3.bucket, Key=key, Body=_gzip_jsonl(per_day[day], extra))
        keys.append(key)
    return keys
