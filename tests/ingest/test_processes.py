"""Large batches go to worker processes (`pii.processes`): the workers must
give what this process gives, also when the ingest task runs inside a Prefect flow with torch
imported (as in a retrain run), and small batches must stay in this process."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from prefect import flow

import tasks.ingest.pii
import tasks.ingest.processes
from tasks.config import PiiSettings
from tasks.ingest.objects import find_new_objects, ingest_objects
from tasks.storage.s3 import get_jsonl, s3_client
from tests.helpers import batches
from tests.helpers.pii_scoring import labelled_rows


@pytest.fixture
def pool_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many chunks each call to the worker pool got."""
    calls: list[int] = []
    real = tasks.ingest.processes.map_in_processes

    def spy(function, chunks, processes):
        chunks = list(chunks)
        calls.append(len(chunks))
        return real(function, chunks, processes)

    monkeypatch.setattr(tasks.ingest.pii, "map_in_processes", spy)
    return calls


def support_records(n: int) -> list[dict]:
    """Labelled PII texts (every kind) as customer messages, Bitext-style agent replies."""
    rows = labelled_rows()
    rows = rows[:: len(rows) // n][:n]
    clean = batches.clean_batch(n)
    for record, row in zip(clean, rows, strict=True):
        record["messages"][0]["text"] = row["text"]
    return clean


@pytest.mark.usefixtures("prefect_api")
def test_ingest_in_a_flow_redacts_in_worker_processes_as_in_process(settings, pool_calls):
    import torch  # noqa: F401  (a retrain run's process has it imported before ingest)

    records = support_records(100)
    raw = "".join(json.dumps(r) + "\n" for r in records).encode()
    client = s3_client(settings.s3)
    key = f"{settings.s3.raw_prefix}dt=2026-11-21/labelled.jsonl"
    client.put_object(Bucket=settings.s3.bucket, Key=key, Body=raw)
    workers = settings.pii.model_copy(update={"processes": 2, "min_texts_per_process": 50})
    in_workers = settings.model_copy(update={"pii": workers})

    @flow
    def ingest_only():
        return ingest_objects(in_workers, find_new_objects(in_workers).objects, run_id="w")

    result = ingest_only()

    assert pool_calls  # the texts went to the workers
    accepted = get_jsonl(client, settings.s3.bucket, result.staging_key)
    in_process = tasks.ingest.pii.get_redactor(settings.pii)  # 100 records: below the threshold
    expected = [r for r, _ in in_process.redact_records(records, Counter())]
    assert pool_calls == [1]
    assert [r["messages"] for r in accepted] == [r["messages"] for r in expected]
    assert result.pii_redactions["PERSON"] > 0 and result.pii_redactions["IBAN"] > 0


def test_small_batches_stay_in_this_process(pool_calls):
    redactor = tasks.ingest.pii.get_redactor(PiiSettings(processes=2, min_texts_per_process=1000))
    assert (
        redactor.redact_texts(["mail me at ann@example.org"] * 3000)
        == ["mail me at <EMAIL>"] * 3000
    )
    assert pool_calls == []
