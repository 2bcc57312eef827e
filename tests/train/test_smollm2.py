"""The real base model: a short LoRA fine-tune of SmolLM2-135M-Instruct on Bitext support logs
lowers its loss on held-out conversations. Minutes on 2 CPU cores, hence `slow`."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import pytest

from tasks.evaluate.aggregate import ModelRef, score_model
from tasks.ingest.sample_data import bundled_csv, row_to_record
from tasks.prepare.dataset import DatasetRef, to_chat_example, with_metadata
from tasks.storage.s3 import put_jsonl, s3_client
from tasks.train.local import train_local

pytestmark = pytest.mark.slow


def chat_examples(rows: list[tuple[int, dict]], system_prompt: str) -> list[dict]:
    at = datetime(2026, 11, 21, tzinfo=UTC)
    records = [row_to_record(i, row, at) for i, row in rows]
    return [with_metadata(r, to_chat_example(r, system_prompt)) for r in records]


def test_lora_fine_tune_lowers_held_out_loss(settings, smollm2_dir):
    settings = settings.model_copy(
        update={
            "training": settings.training.model_copy(
                update={"max_steps": 8, "batch_size": 4, "max_length": 128}
            )
        }
    )
    with bundled_csv().open(newline="", encoding="utf-8") as handle:
        rows = list(enumerate(csv.DictReader(handle)))
    # every 50th row is training data, a disjoint interleaved set is held out: all intents in both
    train = chat_examples(rows[::50], settings.dataset.system_prompt)
    heldout = chat_examples(rows[25::400], settings.dataset.system_prompt)
    client = s3_client(settings.s3)
    put_jsonl(
        client,
        settings.s3.bucket,
        "datasets/t/train.jsonl",
        [{"messages": e["messages"]} for e in train],
    )
    put_jsonl(client, settings.s3.bucket, "datasets/t/heldout.jsonl", heldout)
    dataset = DatasetRef(
        version="t",
        prefix="datasets/t/",
        train_key="datasets/t/train.jsonl",
        validation_key="datasets/t/train.jsonl",
        heldout_key="datasets/t/heldout.jsonl",
        golden_key="datasets/t/heldout.jsonl",
        counts={},
        curated=0,
        quarantined=0,
        quarantine_key=None,
    )

    trained = train_local.fn(settings, dataset, run_id="pytest-smollm2")
    base = ModelRef(label="base", base_model_dir=str(smollm2_dir))
    tuned = ModelRef(
        label="tuned", base_model_dir=str(smollm2_dir), adapter_dir=trained.adapter_dir
    )
    before = score_model.fn(settings, base, {"heldout": dataset.heldout_key})["heldout"].overall
    after = score_model.fn(settings, tuned, {"heldout": dataset.heldout_key})["heldout"].overall

    assert trained.steps == 8 and trained.device == "cpu"
    # one loss per step; single steps' losses are not compared: batches are grouped by length,
    # so step 1 (the longest batch) and step 8 hold different kinds of conversations
    assert len(trained.loss_curve) == 8
    print(
        f"held-out loss {before.loss:.4f} -> {after.loss:.4f}, "
        f"token accuracy {before.token_accuracy:.3f} -> {after.token_accuracy:.3f}"
    )
    assert after.loss < before.loss * 0.9, (before, after)
    assert after.token_accuracy > before.token_accuracy
