"""Prepare: redacted support logs → a versioned chat-format dataset, a frozen golden set, splits.

Every accepted record lands in exactly one place: train, validation, the golden set (first run
only), the recent held-out set, or quarantine (duplicate, or a golden leak: see
tasks/prepare/golden.py
for the golden set's freeze and leak check). Splits are decided by a hash of the conversation
id, so a conversation never moves between splits from one run to the next, and the golden
bucket is never trained on.

The dataset version is a hash of its content: re-running on the same logs gives the same version.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import DatasetSettings, Settings
from tasks.ingest.objects import ObjectRef
from tasks.prepare.curation import select_best, split_convertible, to_chat_or_reason
from tasks.prepare.golden import (
    FrozenGolden,
    assert_no_leak,
    choose_golden,
    freeze,
    frozen_from_records,
    golden_keys,
    hash_fraction,
    load_golden,
    normalise,
    record_key,
)
from tasks.storage import layout
from tasks.storage.s3 import encode_jsonl, get_jsonl, put_json, put_jsonl, s3_client


class DatasetRef(BaseModel):
    """Where a curated dataset version lives and what it holds."""

    version: str
    prefix: str
    train_key: str
    validation_key: str
    heldout_key: str
    golden_key: str
    counts: dict[str, int]
    curated: int
    quarantined: int
    quarantine_key: str | None


def to_chat_example(record: dict[str, Any], system_prompt: str) -> dict[str, Any]:
    """A support-log record → the OpenAI chat fine-tuning format (customer→user, agent→assistant,
    `system` notes left out); records reach here only after `split_convertible`."""
    example, reason = to_chat_or_reason(record, system_prompt)
    if example is None:
        raise ValueError(f"{record.get('conversation_id')}: {reason}")
    return example


def with_metadata(record: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """A held-out example keeps the fields evaluation slices by; training files stay pure."""
    meta = {k: record.get(k) for k in ("conversation_id", "category", "intent", "segments")}
    return {**example, "metadata": meta}


def assign_splits(
    records: list[dict[str, Any]], config: DatasetSettings, golden: FrozenGolden | None
) -> dict[str, list[dict[str, Any]]]:
    """Split records; `golden=None` means no golden set exists yet and one is chosen now
    (tasks/prepare/golden.py: raises GoldenSetPending when the batch is too small to freeze one).

    Returns lists for train, validation, golden (chosen now, or already in the frozen set),
    heldout, and the quarantine reasons `duplicate` and `golden_leak`.
    """
    splits: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in ("train", "validation", "golden", "heldout", "duplicate", "golden_leak")
    }
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    unique = []
    for record in sorted(records, key=lambda r: (r["timestamp"], r["conversation_id"])):
        content = normalise(" ".join(m["text"] for m in record["messages"]))
        if record["conversation_id"] in seen_ids or content in seen_content:
            splits["duplicate"].append(record)
            continue
        seen_ids.add(record["conversation_id"])
        seen_content.add(content)
        unique.append(record)

    if golden is None:  # first run: freeze the lowest-hash conversations of the bucket
        golden = frozen_from_records(choose_golden(unique, config), config)
    for record in unique:  # kept in time order, so reruns produce identical files
        bucket = hash_fraction(record["conversation_id"])
        if bucket < golden.fraction:  # the fraction the golden set was drawn with
            in_golden = record["conversation_id"] in golden.conversation_ids
            splits["golden" if in_golden else "heldout"].append(record)
        elif bucket < golden.fraction + config.validation_fraction:
            splits["validation"].append(record)
        else:
            splits["train"].append(record)

    for name in ("train", "validation"):
        kept = []
        for record in splits[name]:
            leaks = golden.leak_reason(record["conversation_id"], record_key(record))
            (splits["golden_leak"] if leaks else kept).append(record)
        splits[name] = kept
    return splits


def _quarantine_rows(splits: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    reasons = {
        "duplicate": "duplicate conversation (same id or same text as an earlier record)",
        "golden_leak": "golden conversation id, or same or near-duplicate customer message as "
        "a golden example: would leak evaluation data",
    }
    return [
        {
            "source_key": r["_source"]["key"],
            "line": r["_source"]["line"],
            "reason": reason,
            "conversation_id": r["conversation_id"],
        }
        for name, reason in reasons.items()
        for r in splits[name]
    ]


@task
def build_dataset(
    settings: Settings,
    redacted_key: str,
    run_id: str,
    sources: list[ObjectRef],
    quality_report_key: str,
) -> DatasetRef:
    """Write datasets/<version>/{train,validation,heldout}.jsonl + manifest.json, and the golden
    set on the first run (conditional create, so concurrent first runs cannot both choose one)."""
    s3, config = settings.s3, settings.dataset
    client = s3_client(s3)
    records = get_jsonl(client, s3.bucket, redacted_key)
    # one record that cannot become a chat example is quarantined, not a crash (tasks/curation)
    records, unconvertible = split_convertible(records, config.system_prompt)

    golden_key, _ = golden_keys(settings)
    golden = load_golden(client, settings)
    splits = assign_splits(records, config, golden)  # GoldenSetPending: nothing is written
    assert_no_leak(splits, golden or frozen_from_records(splits["golden"], config))
    dropped: Counter[str] = Counter()  # learn from the best: below-bar records only evaluate
    splits["below_bar"] = []
    for name in ("train", "validation"):
        splits[name], below_bar, reasons = select_best(splits[name], settings.curation)
        splits["below_bar"] += below_bar
        dropped += reasons

    def chat(name: str) -> list[dict[str, Any]]:
        return [to_chat_example(r, config.system_prompt) for r in splits[name]]

    def chat_with_meta(name: str) -> list[dict[str, Any]]:
        return [with_metadata(r, to_chat_example(r, config.system_prompt)) for r in splits[name]]

    if golden is None:
        freeze(client, settings, chat_with_meta("golden"), run_id)

    train, validation, heldout = chat("train"), chat("validation"), chat_with_meta("heldout")
    content_hash = hashlib.sha256(
        encode_jsonl(train) + b"\0" + encode_jsonl(validation) + b"\0" + encode_jsonl(heldout)
    ).hexdigest()
    version = f"ds-{content_hash[:12]}"

    def key(name: str) -> str:
        return layout.dataset_key(s3, version, name)

    for name, rows in (("train", train), ("validation", validation), ("heldout", heldout)):
        put_jsonl(client, s3.bucket, key(f"{name}.jsonl"), rows)
    put_jsonl(client, s3.bucket, key("below_bar.jsonl"), chat_with_meta("below_bar"))

    quarantine = _quarantine_rows(splits) + unconvertible
    quarantine_key = None
    if quarantine:
        quarantine_key = layout.quarantine_key(s3, run_id, "prepare")
        put_jsonl(client, s3.bucket, quarantine_key, quarantine)

    counts = {name: len(rows) for name, rows in splits.items()}
    curated = sum(counts[n] for n in ("train", "validation", "golden", "heldout", "below_bar"))
    put_json(
        client,
        s3.bucket,
        layout.dataset_manifest_key(s3, version),
        {
            "version": version,
            "content_hash": content_hash,
            "created_at": datetime.now(UTC).isoformat(),
            "run_id": run_id,
            "sources": [{"key": o.key, "etag": o.etag} for o in sources],
            "counts": counts,
            "dropped_for_training": dict(dropped),
            "unconvertible": len(unconvertible),
            "golden_key": golden_key,
            "quality_report": quality_report_key,
            "redaction": {"applied": True, "source": redacted_key},  # checked before any upload
            "format": "openai-chat",
        },
    )
    return DatasetRef(
        version=version,
        prefix=layout.dataset_prefix(s3, version),
        train_key=key("train.jsonl"),
        validation_key=key("validation.jsonl"),
        heldout_key=key("heldout.jsonl"),
        golden_key=golden_key,
        counts=counts,
        curated=curated,
        quarantined=len(quarantine),
        quarantine_key=quarantine_key,
    )
