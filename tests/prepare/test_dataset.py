"""Prepare: chat format, dedupe, golden set frozen and never trained on, accounting."""

from __future__ import annotations

import pytest

from tasks.config import DatasetSettings
from tasks.ingest.objects import ObjectRef
from tasks.prepare.dataset import assign_splits, build_dataset, hash_fraction, to_chat_example
from tasks.prepare.golden import frozen_from_records
from tasks.storage.s3 import get_json, get_jsonl, list_objects, put_jsonl, s3_client


def record(i: int, customer: str | None = None, agent: str | None = None) -> dict:
    return {
        "conversation_id": f"c-{i:04d}",
        "timestamp": f"2026-11-21T10:{i % 60:02d}:00Z",
        "category": "ORDER" if i % 2 else "REFUND",
        "messages": [
            {"role": "customer", "text": customer or f"question number {i}"},
            {"role": "agent", "text": agent or f"answer number {i}"},
        ],
        "_source": {"key": "raw/x.jsonl", "line": i + 1},
    }


CONFIG = DatasetSettings(
    golden_fraction=0.1, golden_max_examples=8, golden_min_examples=5, validation_fraction=0.1
)


def test_chat_format_maps_roles_and_ends_on_the_agent():
    r = record(1)
    r["messages"].append({"role": "customer", "text": "thanks!"})
    example = to_chat_example(r, "Be helpful.")
    assert example == {
        "messages": [
            {"role": "system", "content": "Be helpful."},
            {"role": "user", "content": "question number 1"},
            {"role": "assistant", "content": "answer number 1"},
        ]
    }


def test_hash_fraction_is_stable_and_spread():
    values = [hash_fraction(f"c-{i}") for i in range(2000)]
    assert values == [hash_fraction(f"c-{i}") for i in range(2000)]
    assert 0.07 < sum(v < 0.1 for v in values) / 2000 < 0.13


def test_every_record_lands_in_exactly_one_place():
    records = [record(i) for i in range(300)]
    records += [record(7), record(999, customer="Question  number 3", agent="answer number 3")]
    splits = assign_splits(records, CONFIG, golden=None)
    placed = [r["conversation_id"] for rows in splits.values() for r in rows]
    assert len(placed) == len(records)
    assert len(splits["duplicate"]) == 2  # same id, and same text under another id
    assert len(splits["golden"]) == 8 and splits["heldout"]  # cap reached, rest held out


def test_golden_conversations_and_their_texts_never_reach_training():
    records = [record(i) for i in range(300)]
    first = assign_splits(records, CONFIG, golden=None)
    golden_ids = {r["conversation_id"] for r in first["golden"]}
    golden_texts = {r["messages"][0]["text"] for r in first["golden"]}

    # a later batch: the same customer messages come back under new ids
    later = [record(1000 + i, customer=text) for i, text in enumerate(sorted(golden_texts))]
    later += [record(i) for i in range(300, 400)]
    frozen = frozen_from_records(first["golden"], CONFIG)
    second = assign_splits(later, CONFIG, golden=frozen)
    trained = {r["conversation_id"] for r in second["train"] + second["validation"]}
    assert not trained & golden_ids
    assert not {r["messages"][0]["text"] for r in second["train"]} & golden_texts
    leaked = {r["messages"][0]["text"] for r in second["golden_leak"]}
    in_golden_bucket = {r["messages"][0]["text"] for r in second["heldout"]}
    assert leaked | in_golden_bucket >= golden_texts
    assert second["golden"] == []  # frozen: never re-chosen from new conversations


def test_build_dataset_writes_version_manifest_and_freezes_golden(settings):
    client = s3_client(settings.s3)
    bucket = settings.s3.bucket
    settings = settings.model_copy(update={"dataset": CONFIG})
    put_jsonl(client, bucket, "staging/r1/redacted.jsonl", [record(i) for i in range(200)])
    sources = [ObjectRef(key="raw/x.jsonl", etag='"abc"', size=10)]

    first = build_dataset.fn(
        settings, "staging/r1/redacted.jsonl", "r1", sources, "reports/r1/q.json"
    )
    assert first.curated + first.quarantined == 200
    assert first.counts["golden"] == 8
    train = get_jsonl(client, bucket, first.train_key)
    assert len(train) == first.counts["train"]
    assert all(set(row) == {"messages"} for row in train)  # pure OpenAI chat format
    manifest = get_json(client, bucket, first.prefix + "manifest.json").body
    assert manifest["sources"] == [{"key": "raw/x.jsonl", "etag": '"abc"'}]
    assert manifest["counts"] == first.counts
    golden_before = client.get_object(Bucket=bucket, Key=first.golden_key)["ETag"]

    again = build_dataset.fn(
        settings, "staging/r1/redacted.jsonl", "r2", sources, "reports/r2/q.json"
    )
    assert again.version == first.version  # content-addressed: same logs, same version
    assert client.get_object(Bucket=bucket, Key=first.golden_key)["ETag"] == golden_before
    assert again.counts == first.counts


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_dataset_settings_reject_out_of_range_fractions(fraction: float):
    with pytest.raises(ValueError, match="golden_fraction"):
        DatasetSettings(golden_fraction=fraction)


def test_a_first_batch_too_small_for_a_golden_set_fails_with_the_fix(settings):
    client = s3_client(settings.s3)
    put_jsonl(client, settings.s3.bucket, "staging/r1/redacted.jsonl", [record(1), record(2)])
    tiny_bucket = settings.model_copy(
        update={"dataset": DatasetSettings(golden_fraction=0.001, golden_max_examples=8)}
    )
    with pytest.raises(ValueError, match=r"raise `dataset\.golden_fraction`"):
        build_dataset.fn(tiny_bucket, "staging/r1/redacted.jsonl", "r1", [], "reports/r1/q.json")
    assert not list(list_objects(client, settings.s3.bucket, settings.s3.datasets_prefix))
