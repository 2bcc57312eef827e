"""No raw PII outside `raw/`: a batch with planted personal data goes through a full run (real
Prefect API, moto S3, tiny model); then every object outside `raw/`, the run's artifacts, events
and logs are scanned for the planted values."""

from __future__ import annotations

import gzip
import json
from datetime import date

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import EventFilter, EventResourceFilter

from tasks.ingest.sample_data import build_daily_logs, bundled_csv, upload_daily_logs
from tasks.storage.s3 import list_objects, put_jsonl, s3_client
from tests.helpers.flow_runs import run_retrain

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]

# value planted → where: customer texts, agent texts, an unknown extra field, a malformed line
PLANTED = {
    "email": "olivia.martinez84@gmail.com",
    "email_extra": "r.kowalski@firma.pl",
    "phone_us": "(415) 555-0198",
    "phone_uk": "+44 7700 900123",
    "phone_de": "+49 30 901820 44",
    "card_dashes": "5425-2334-3010-9903",
    "card_spaces": "4111 1111 1111 1111",
    "iban": "FR76 3000 6000 0112 3456 7890 189",
    "ssn": "536-90-4399",
    "ip": "203.0.113.77",
    "name": "Margaret Thompson",
    "name_malformed": "Ingrid Bergstrom",
    "email_malformed": "ingrid.b@example.net",
}


def planted_records() -> list[dict]:
    p = PLANTED
    customer_texts = [
        f"Hi, my email is {p['email']}, please update my order",
        f"call me back on {p['phone_us']} or {p['phone_uk']}",
        f"I was charged twice on card {p['card_dashes']}",
        f"refund to {p['iban']} please",
        f"my SSN is {p['ssn']} for the tax form",
        f"the login came from {p['ip']}, not me",
        f"This is {p['name']}, I still have no invoice",
        f"my old card {p['card_spaces']} expired, office phone {p['phone_de']}",
    ]
    return [
        {
            "conversation_id": f"pii-{i}",
            "timestamp": "2026-11-21T09:00:00Z",
            "channel": "web",
            "language": "en",
            "intent": "get_invoice",
            "category": "INVOICE",
            "customer_email": p["email_extra"],
            "messages": [
                {"role": "customer", "text": text},
                {"role": "agent", "text": f"Thanks {p['name']}, I have noted that for you."},
            ],
        }
        for i, text in enumerate(customer_texts)
    ]


def stored_text(client, bucket: str, key: str) -> str:
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    return body.decode("utf-8", errors="replace")


def test_planted_pii_never_leaves_raw(flow_settings):
    settings = flow_settings
    per_day = build_daily_logs(bundled_csv(), days=2, end_date=date(2026, 11, 21), limit=160)
    upload_daily_logs(settings.s3, per_day)
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    planted_key = f"{settings.s3.raw_prefix}2026-11-21/crm-export.jsonl"
    put_jsonl(client, bucket, planted_key, planted_records())
    note = f"{PLANTED['name_malformed']} <{PLANTED['email_malformed']}>"
    malformed = '{"conversation_id": "bad", "note": "' + note + '"'  # cut off: malformed JSON
    body = client.get_object(Bucket=bucket, Key=planted_key)["Body"].read()
    client.put_object(Bucket=bucket, Key=planted_key, Body=body + malformed.encode() + b"\n")

    summary = run_retrain(settings)

    assert summary.decision in {"promoted", "not_promoted"}, summary.reasons
    assert summary.pii_redactions.get("EMAIL", 0) >= 2 and summary.pii_redactions.get("PERSON")
    places: dict[str, str] = {}
    for obj in list_objects(client, bucket, ""):
        if not obj["Key"].startswith(settings.s3.raw_prefix):
            places[f"s3://{bucket}/{obj['Key']}"] = stored_text(client, bucket, obj["Key"])
    with get_client(sync_client=True) as prefect:
        run_filter = [summary.run_id]
        for artifact in prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_filter))
        ):
            places[f"artifact {artifact.key}"] = json.dumps([artifact.data, artifact.description])
        logs = prefect.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_filter))
        )
        places["logs"] = "\n".join(log.message for log in logs)
        events = prefect.read_events(
            filter=EventFilter(
                resource=EventResourceFilter(id=[f"retrain.model.{settings.model_name}"])
            ),
            limit=50,
        ).events
        places["events"] = "\n".join(e.model_dump_json() for e in events)

    quarantine = [k for k in places if "/quarantine/" in k]
    rows = [json.loads(line) for k in quarantine for line in places[k].splitlines()]
    (bad_line,) = [r for r in rows if r.get("source_key") == planted_key]
    assert bad_line["source"] == f"s3://{bucket}/{planted_key}" and bad_line["etag"]
    assert bad_line["line"] == len(planted_records()) + 1 and "<EMAIL>" in bad_line["preview"]
    assert any(key.endswith("train.jsonl") for key in places), sorted(places)
    leaks = [
        (what, where)
        for where, text in places.items()
        for what, value in PLANTED.items()
        if value in text
    ]
    assert not leaks
