"""Dataset versions and golden sets written straight to a test bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasks.prepare.dataset import DatasetRef
from tasks.prepare.golden import freeze, golden_keys
from tasks.storage.s3 import put_json, put_jsonl, s3_client

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

SYSTEM = {"role": "system", "content": "You help customers."}


def chat(question: str, answer: str, turns: int = 1) -> dict:
    messages = [SYSTEM]
    for turn in range(turns):
        messages += [
            {"role": "user", "content": f"{question} (part {turn})" if turn else question},
            {"role": "assistant", "content": answer * (turn + 1)},
        ]
    return {"messages": messages}


def examples(tag: str, count: int) -> list[dict]:
    """Varied conversations: one to three turns, short and long answers, non-ASCII text."""
    return [
        chat(
            f"[{tag}] Ticket {i}: my órder #{i * 7} via {('chat', 'email', 'whatsapp')[i % 3]}?",
            f"Sorry about order {i}. " + "Let me check that for you. " * (i % 4),
            turns=1 + i % 3,
        )
        for i in range(count)
    ]


def put_version(settings, version: str, age: timedelta, train: list, validation: list) -> str:
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    prefix = f"{settings.s3.datasets_prefix}{version}/"
    put_jsonl(client, bucket, prefix + "train.jsonl", train)
    put_jsonl(client, bucket, prefix + "validation.jsonl", validation)
    manifest = {"version": version, "created_at": (NOW - age).isoformat(), "counts": {}}
    put_json(client, bucket, prefix + "manifest.json", manifest)
    return prefix


def put_golden(settings, golden: list[dict]) -> str:
    rows = [{**e, "metadata": {"conversation_id": f"g{i}"}} for i, e in enumerate(golden)]
    freeze(s3_client(settings.s3), settings, rows, run_id="test")
    return golden_keys(settings)[0]


def ref(settings, version: str, prefix: str, golden_key: str) -> DatasetRef:
    return DatasetRef(
        version=version,
        prefix=prefix,
        train_key=prefix + "train.jsonl",
        validation_key=prefix + "validation.jsonl",
        heldout_key=prefix + "validation.jsonl",
        golden_key=golden_key,
        counts={},
        curated=0,
        quarantined=0,
        quarantine_key=None,
    )
