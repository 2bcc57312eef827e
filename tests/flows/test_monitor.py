"""The monitor flow end to end: a real Prefect API, a moto S3 server, MiniLM embeddings, a tiny
model with the real SmolLM2 tokenizer as the champion, synthetic logs that move or stay put."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.monitor import EVENT
from tasks.promote.registry import CHAMPION, model_prefix
from tasks.storage.s3 import get_json, put_json, s3_client
from tests.helpers.events import emitted_events
from tests.helpers.flow_runs import run_monitor
from tests.helpers.synthetic_logs import make_logs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def monitor_settings(settings):
    drift = settings.drift.model_copy(
        update={"embedding_sample": 60, "performance_examples": 40, "performance_min_examples": 20}
    )
    # its own model name: other tests emit drift events for support-bot on the shared server
    return settings.model_copy(update={"drift": drift, "model_name": f"bot-{uuid.uuid4().hex[:8]}"})


def put_logs(settings, key: str, records: list[dict]) -> str:
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    s3_client(settings.s3).put_object(Bucket=settings.s3.bucket, Key=key, Body=body)
    return key


def recent_logs(settings, records: list[dict], name: str = "recent") -> str:
    """Records stamped within the last hours, under today's raw partition."""
    now = datetime.now(UTC)
    for i, record in enumerate(records):
        record["timestamp"] = (now - timedelta(minutes=3 + i % 600)).isoformat()
    day = f"{now:%Y-%m-%d}"
    return put_logs(settings, f"{settings.s3.raw_prefix}dt={day}/{name}.jsonl.gz", records)


def artifact_keys(flow_run_id: str) -> set[str]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in artifacts}


def test_drift_against_a_reference_batch_fires_once_with_numbers_not_texts(monitor_settings):
    settings = monitor_settings
    put_logs(settings, "reference/batch-1.jsonl.gz", make_logs(240, seed=21))
    settings = settings.model_copy(
        update={
            "drift": settings.drift.model_copy(
                update={"reference": f"s3://{settings.s3.bucket}/reference/"}
            )
        }
    )
    window = make_logs(160, seed=22, new_topic_share=0.3, formal_replies=True)
    recent_logs(settings, window)

    first = run_monitor(settings)

    assert first.verdict == "drift" and first.alert.fire
    assert {"category_mix", "agent_length", "agent_embedding"} <= set(first.alert.new)
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    report = get_json(client, bucket, first.report_key).body
    assert report["verdict"] == "drift" and report["window"]["records"] == 160
    stored = {s["name"]: s for s in report["statistics"]}
    assert stored["category_mix"]["shares"]["SOLAR"]["reference"] == 0
    assert all({"value", "threshold", "drifted"} <= set(s) for s in stored.values())
    png = client.get_object(Bucket=bucket, Key=first.report_key.replace(".json", ".png"))
    assert png["Body"].read()[:4] == b"\x89PNG"
    assert artifact_keys(first.run_id) == {"drift-monitor"}

    events = emitted_events(EVENT, f"retrain.model.{settings.model_name}")
    assert [e.payload["run_id"] for e in events] == [first.run_id]
    payload = json.dumps(events[0].payload)
    assert events[0].payload["drifted"] == first.alert.new
    for record in window[:50]:  # evidence is numbers and class names, never conversation text
        for message in record["messages"]:
            assert message["text"] not in payload

    second = run_monitor(settings)  # the same drift again: reported, not announced again
    assert second.verdict == "drift" and not second.alert.fire
    assert "already announced" in second.alert.reason
    state = get_json(client, bucket, f"{settings.s3.state_prefix}drift-{settings.model_name}.json")
    assert [h["run_id"] for h in state.body["history"]] == [first.run_id, second.run_id]
    assert len(emitted_events(EVENT, f"retrain.model.{settings.model_name}", timeout_s=3)) == 1


def register_champion(settings, tiny_model_dir, tmp_path, training_keys: list[str]) -> str:
    """A champion as the retrain flow leaves it: alias → card → LoRA adapter + dataset manifest."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
        adapter_dir
    )
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter_dir)
    client, bucket, version = s3_client(settings.s3), settings.s3.bucket, "20261101T000000-abc"
    prefix = f"{model_prefix(settings)}versions/{version}/"
    for path in adapter_dir.iterdir():
        client.upload_file(str(path), bucket, f"{prefix}adapter/{path.name}")
    dataset_prefix = f"{settings.s3.datasets_prefix}v1/"
    put_json(
        client,
        bucket,
        dataset_prefix + "manifest.json",
        {"sources": [{"key": k} for k in training_keys]},
    )
    card = {
        "name": settings.model_name,
        "version": version,
        "base_model": str(tiny_model_dir),
        "lineage": {"dataset_prefix": dataset_prefix},
        # a random tiny model's answer loss is about ln(vocabulary) = 10.8 on any text
        "evaluation": {"recent": {"challenger": {"overall": {"loss": 11.0}}}},
    }
    put_json(client, bucket, prefix + "card.json", card)
    put_json(
        client, bucket, f"{model_prefix(settings)}aliases/{CHAMPION}.json", {"version": version}
    )
    return version


def test_the_champion_is_checked_against_its_own_training_data(
    monitor_settings, tiny_model_dir, tmp_path
):
    settings = monitor_settings
    old = put_logs(
        settings, f"{settings.s3.raw_prefix}dt=2026-10-01/logs.jsonl.gz", make_logs(200, 31)
    )
    version = register_champion(settings, tiny_model_dir, tmp_path, [old])
    recent_logs(settings, make_logs(150, seed=32))

    result = run_monitor(settings)

    names = {s.name: s for s in result.statistics}
    assert result.verdict == "no_drift", [s for s in result.statistics if s.drifted]
    assert "champion_loss" in names and names["champion_loss"].detail["examples"] == 40
    assert not result.alert.fire
    report = get_json(s3_client(settings.s3), settings.s3.bucket, result.report_key).body
    assert report["champion_version"] == version and report["reference"]["records"] == 200
    assert report["window"]["records"] == 150  # the old partition is not in the window


def test_a_quiet_window_reports_not_enough_data(monitor_settings):
    settings = monitor_settings
    put_logs(settings, "reference/batch.jsonl.gz", make_logs(200, seed=41))
    drift = settings.drift.model_copy(update={"reference": f"s3://{settings.s3.bucket}/reference/"})
    settings = settings.model_copy(update={"drift": drift})
    recent_logs(settings, make_logs(30, seed=42))

    result = run_monitor(settings)

    assert result.verdict == "not_enough_data" and result.statistics == []
    assert not result.alert.fire
    assert any("not enough data: the current batch has 30 records" in m for m in result.messages)
