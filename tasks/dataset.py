"""Prepare: redacted support logs → a versioned chat-format dataset, a frozen golden set, splits.

Every accepted record lands in exactly one place: train, validation, the golden set (first run
only), the recent held-out set, or quarantine (duplicate, or same customer message as a golden
example). Splits are decided by a hash of the conversation id, so a conversation never moves
between splits from one run to the next, and the golden bucket is never trained on.

The dataset version is a hash of its content: re-running on the same logs gives the same version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import DatasetSettings, Settings
from tasks.ingest import ObjectRef
from tasks.s3 import (
    encode_jsonl,
    get_jsonl,
    list_objects,
    put_bytes_if,
    put_json,
    put_jsonl,
    s3_client,
)

GOLDEN_FILE = "golden.jsonl"
ROLE_TO_CHAT = {"customer": "user", "agent": "assistant"}


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


def hash_fraction(conversation_id: str) -> float:
    """A stable number in [0, 1) per conversation, used to assign splits."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def leak_key(customer_texts: Iterable[str]) -> str:
    """What the customer said, normalised: two conversations with the same key leak into each
    other. Records and chat examples both reduce to it (customer turns = user turns)."""
    return _normalise(" ".join(customer_texts))


def customer_key(record: dict[str, Any]) -> str:
    return leak_key(m["text"] for m in record["messages"] if m["role"] == "customer")


def to_chat_example(record: dict[str, Any], system_prompt: str) -> dict[str, Any]:
    """A support-log record → the OpenAI chat fine-tuning format (customer→user, agent→assistant).

    Trailing customer turns have no answer to learn from, so the example ends at the last
    agent turn.
    """
    turns = [{"role": ROLE_TO_CHAT[m["role"]], "content": m["text"]} for m in record["messages"]]
    while turns and turns[-1]["role"] != "assistant":
        turns.pop()
    return {"messages": [{"role": "system", "content": system_prompt}, *turns]}


def with_metadata(record: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """A held-out example keeps the fields evaluation slices by; training files stay pure."""
    meta = {k: record.get(k) for k in ("conversation_id", "category", "intent", "segments")}
    return {**example, "metadata": meta}


@dataclass(frozen=True)
class FrozenGolden:
    """What training must never see of an existing golden set."""

    conversation_ids: frozenset[str]
    customer_keys: frozenset[str]


def assign_splits(
    records: list[dict[str, Any]], config: DatasetSettings, golden: FrozenGolden | None
) -> dict[str, list[dict[str, Any]]]:
    """Split records; `golden=None` means no golden set exists yet and one is chosen now.

    Returns lists for train, validation, golden (chosen now, or already in the frozen set),
    heldout, and the quarantine reasons `duplicate` and `golden_leak`.
    """
    splits: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in ("train", "validation", "golden", "heldout", "duplicate", "golden_leak")
    }
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    in_golden_bucket = []
    for record in sorted(records, key=lambda r: (r["timestamp"], r["conversation_id"])):
        content = _normalise(" ".join(m["text"] for m in record["messages"]))
        if record["conversation_id"] in seen_ids or content in seen_content:
            splits["duplicate"].append(record)
            continue
        seen_ids.add(record["conversation_id"])
        seen_content.add(content)
        bucket = hash_fraction(record["conversation_id"])
        if bucket < config.golden_fraction:
            in_golden_bucket.append(record)
        elif bucket < config.golden_fraction + config.validation_fraction:
            splits["validation"].append(record)
        else:
            splits["train"].append(record)

    if golden is None:  # first run: freeze the lowest-hash conversations of the bucket
        ranked = sorted(in_golden_bucket, key=lambda r: hash_fraction(r["conversation_id"]))
        chosen = {r["conversation_id"] for r in ranked[: config.golden_max_examples]}
        golden = FrozenGolden(
            conversation_ids=frozenset(chosen),
            customer_keys=frozenset(
                customer_key(r) for r in ranked if r["conversation_id"] in chosen
            ),
        )
    for record in in_golden_bucket:  # kept in time order, so reruns produce identical files
        in_golden = record["conversation_id"] in golden.conversation_ids
        splits["golden" if in_golden else "heldout"].append(record)
    golden_keys = golden.customer_keys

    for name in ("train", "validation"):
        kept = []
        for record in splits[name]:
            (splits["golden_leak"] if customer_key(record) in golden_keys else kept).append(record)
        splits[name] = kept
    return splits


def load_golden(client: Any, bucket: str, key: str) -> FrozenGolden | None:
    """The frozen golden set's ids and customer messages, or None if none was chosen yet."""
    if not any(o["Key"] == key for o in list_objects(client, bucket, key)):
        return None
    examples = get_jsonl(client, bucket, key)
    return FrozenGolden(
        conversation_ids=frozenset(e["metadata"]["conversation_id"] for e in examples),
        customer_keys=frozenset(
            leak_key(m["content"] for m in e["messages"] if m["role"] == "user") for e in examples
        ),
    )


def _quarantine_rows(splits: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    reasons = {
        "duplicate": "duplicate conversation (same id or same text as an earlier record)",
        "golden_leak": "same customer message as a golden example: would leak evaluation data",
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

    golden_key = s3.golden_prefix + GOLDEN_FILE
    golden = load_golden(client, s3.bucket, golden_key)
    splits = assign_splits(records, config, golden)
    if golden is None and not splits["golden"]:
        raise ValueError(
            f"none of the {len(records)} records fell in the golden bucket "
            f"(`dataset.golden_fraction` = {config.golden_fraction}), so no evaluation set can be "
            "frozen: run again once more logs have arrived, or raise `dataset.golden_fraction`"
        )

    def chat(name: str) -> list[dict[str, Any]]:
        return [to_chat_example(r, config.system_prompt) for r in splits[name]]

    def chat_with_meta(name: str) -> list[dict[str, Any]]:
        return [with_metadata(r, to_chat_example(r, config.system_prompt)) for r in splits[name]]

    if golden is None and splits["golden"]:
        put_bytes_if(client, s3.bucket, golden_key, encode_jsonl(chat_with_meta("golden")), None)

    train, validation, heldout = chat("train"), chat("validation"), chat_with_meta("heldout")
    content_hash = hashlib.sha256(
        encode_jsonl(train) + b"\0" + encode_jsonl(validation) + b"\0" + encode_jsonl(heldout)
    ).hexdigest()
    version = f"ds-{content_hash[:12]}"
    prefix = f"{s3.datasets_prefix}{version}/"
    for name, rows in (("train", train), ("validation", validation), ("heldout", heldout)):
        put_jsonl(client, s3.bucket, f"{prefix}{name}.jsonl", rows)

    quarantine = _quarantine_rows(splits)
    quarantine_key = None
    if quarantine:
        quarantine_key = f"{s3.quarantine_prefix}{run_id}/prepare.jsonl"
        put_jsonl(client, s3.bucket, quarantine_key, quarantine)

    counts = {name: len(rows) for name, rows in splits.items()}
    curated = counts["train"] + counts["validation"] + counts["golden"] + counts["heldout"]
    put_json(
        client,
        s3.bucket,
        f"{prefix}manifest.json",
        {
            "version": version,
            "content_hash": content_hash,
            "created_at": datetime.now(UTC).isoformat(),
            "run_id": run_id,
            "sources": [{"key": o.key, "etag": o.etag} for o in sources],
            "counts": counts,
            "golden_key": golden_key,
            "quality_report": quality_report_key,
            "redaction": {"applied": True, "source": redacted_key},  # checked before any upload
            "format": "openai-chat",
        },
    )
    return DatasetRef(
        version=version,
        prefix=prefix,
        train_key=f"{prefix}train.jsonl",
        validation_key=f"{prefix}validation.jsonl",
        heldout_key=f"{prefix}heldout.jsonl",
        golden_key=golden_key,
        counts=counts,
        curated=curated,
        quarantined=len(quarantine),
        quarantine_key=quarantine_key,
    )
