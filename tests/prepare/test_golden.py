"""The golden set: frozen once with a minimum size, one leak key on every run, near-duplicates."""

from __future__ import annotations

import pytest

from tasks.config import DatasetSettings
from tasks.prepare.dataset import assign_splits, build_dataset
from tasks.prepare.golden import (
    GoldenLeakError,
    GoldenSetPending,
    assert_no_leak,
    frozen_from_records,
    golden_keys,
    golden_status,
    hash_fraction,
    load_golden,
    record_key,
)
from tasks.storage.s3 import get_json, list_objects, put_jsonl, s3_client

CONFIG = DatasetSettings(
    golden_fraction=0.1, golden_max_examples=12, golden_min_examples=6, validation_fraction=0.1
)
TOPICS = [
    "my parcel never arrived and the tracking page shows nothing",
    "I was charged twice for the same subscription this month",
    "how can I change the delivery address on an order I placed",
    "the discount code from your newsletter is not accepted at checkout",
    "can I return a jacket that I bought in one of your stores",
    "your app logs me out every time I open the payments screen",
]


def record(i: int, customer: list[str] | None = None, when: int = 0) -> dict:
    turns = []
    for text in customer or [f"{TOPICS[i % len(TOPICS)]} (ticket {i * 7919})"]:
        turns += [{"role": "customer", "text": text}, {"role": "agent", "text": f"reply {i}"}]
    return {
        "conversation_id": f"conv-{i:05d}",
        "timestamp": f"2026-11-{21 + when}T09:{i % 60:02d}:00Z",
        "channel": "email",
        "category": "SHIPPING",
        "messages": turns,
        "_source": {"key": "raw/y.jsonl.gz", "line": i},
    }


def first_golden(n: int = 300):
    records = [record(i) for i in range(n)]
    splits = assign_splits(records, CONFIG, golden=None)
    return splits["golden"], frozen_from_records(splits["golden"], CONFIG)


def test_a_re_sent_conversation_ending_in_thanks_is_caught():
    golden, frozen = first_golden()
    original = golden[0]
    resent = record(90_000, customer=[m["text"].upper() + "!!" for m in original["messages"][::2]])
    resent["messages"].append({"role": "customer", "text": "Thanks, that's all"})
    assert record_key(resent) == record_key(original)
    assert frozen.leak_reason(resent["conversation_id"], record_key(resent)) is not None


def test_near_duplicates_of_golden_messages_are_kept_out_of_training():
    golden, frozen = first_golden()
    text = golden[0]["messages"][0]["text"]
    near = record(90_001, customer=[text.replace("ticket", "ticket no.") + " please"])
    unrelated = record(90_002, customer=["do you ship to Iceland, and how long does it take?"])
    later = [near, unrelated] + [record(i, when=1) for i in range(300, 400)]

    splits = assign_splits(later, CONFIG, golden=frozen)

    leaked = {r["conversation_id"] for r in splits["golden_leak"]}
    assert "conv-90001" in leaked
    assert "conv-90002" not in leaked
    assert frozen.leak_reason("conv-90001", record_key(near)).startswith("near-duplicate")
    trained = splits["train"] + splits["validation"]
    assert_no_leak({"train": trained, "validation": []}, frozen)  # nothing got past


def test_a_leak_that_gets_past_the_split_fails_loudly():
    golden, frozen = first_golden()
    with pytest.raises(GoldenLeakError, match="leaks the golden set"):
        assert_no_leak({"train": [golden[0]], "validation": []}, frozen)


def test_a_first_batch_too_small_waits_instead_of_freezing(settings):
    client = s3_client(settings.s3)
    settings = settings.model_copy(update={"dataset": CONFIG})
    few = [r for r in (record(i) for i in range(400)) if hash_fraction(r["conversation_id"]) < 0.1]
    put_jsonl(client, settings.s3.bucket, "staging/r1/redacted.jsonl", few[:3])

    status = golden_status.fn(settings, "staging/r1/redacted.jsonl")
    assert status.pending and "3 of 3 conversations fell in the golden bucket" in status.pending
    with pytest.raises(GoldenSetPending, match="golden_min_examples"):
        build_dataset.fn(settings, "staging/r1/redacted.jsonl", "r1", [], "q.json")
    assert list(list_objects(client, settings.s3.bucket, settings.s3.golden_prefix)) == []
    assert list(list_objects(client, settings.s3.bucket, settings.s3.datasets_prefix)) == []


def test_the_frozen_set_keeps_its_fraction_when_the_config_changes(settings):
    client = s3_client(settings.s3)
    put_jsonl(
        client, settings.s3.bucket, "staging/r1/redacted.jsonl", [record(i) for i in range(300)]
    )
    first = build_dataset.fn(
        settings.model_copy(update={"dataset": CONFIG}), "staging/r1/redacted.jsonl", "r1", [], "q"
    )
    _, manifest_key = golden_keys(settings)
    manifest = get_json(client, settings.s3.bucket, manifest_key).body
    assert manifest["fraction"] == 0.1 and "sha256(conversation_id)" in manifest["hash_key"]
    assert manifest["examples"] == first.counts["golden"] == 12
    assert manifest["near_duplicate"]["threshold"] == CONFIG.near_duplicate_threshold

    # someone lowers the fraction later: the conversations of the original bucket stay held out
    later = [record(i, when=1) for i in range(300, 600)]
    put_jsonl(client, settings.s3.bucket, "staging/r2/redacted.jsonl", later)
    smaller = CONFIG.model_copy(update={"golden_fraction": 0.01})
    second = build_dataset.fn(
        settings.model_copy(update={"dataset": smaller}), "staging/r2/redacted.jsonl", "r2", [], "q"
    )
    in_old_bucket = sum(hash_fraction(r["conversation_id"]) < 0.1 for r in later)
    assert second.counts["heldout"] == in_old_bucket
    assert load_golden(client, settings).fraction == 0.1
