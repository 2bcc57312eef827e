"""The API fine-tuning backend against a local OpenAI-compatible server
(tests/helpers/fake_openai.py) that checks every request and response against the official
OpenAPI description."""

from __future__ import annotations

import json
import logging
import random
import socket
from collections.abc import Iterator
from datetime import date

import openai
import pytest

from tasks.config import Settings
from tasks.evaluate.aggregate import ModelRef, aggregate
from tasks.evaluate.hosted import (
    EvalBudgetExceeded,
    generate_replies,
    hosted_replies,
    score_api_model,
)
from tasks.evaluate.scoring import score_examples
from tasks.prepare.dataset import DatasetRef
from tasks.storage.s3 import put_json, put_jsonl, s3_client
from tasks.train.api.guards import NotRedacted, ProviderCutoff, choose_backend, find_pii
from tasks.train.api.jobs import (
    FineTuneFailed,
    JobWatcher,
    MissingApiKey,
    PreflightFailed,
    ProviderUnreachable,
    api_client,
    api_key,
    cancel_jobs_of_run,
    train_api,
)
from tests.helpers.fake_openai import FakeOpenAI

KEY = "sk-test-not-a-real-key-7f3a"
GOLDEN_KEY = "heldout/golden/golden.jsonl"
QUESTIONS = [
    (
        "How do I reset my password? I'm locked out of account {n}.",
        "Use 'Forgot password' on "
        "the sign-in page; a reset link for account {n} arrives within minutes.",
        "ACCOUNT",
    ),
    (
        "my parcel {n} is late again, where is it??",
        "Parcel {n} left our warehouse yesterday and should arrive within two days.",
        "DELIVERY",
    ),
    (
        "Can I get a refund for order {n}? It arrived broken.",
        "Yes: refund for order {n} is approved, you will see it in 3-5 business days.",
        "REFUND",
    ),
    (
        "cancel my plan pls",
        "Your plan is cancelled; you keep access until the end of the month.",
        "SUBSCRIPTION",
    ),
]


def examples(count: int, seed: int, with_meta: bool = False) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        user, agent, category = rng.choice(QUESTIONS)
        row = {
            "messages": [
                {"role": "system", "content": "You are a helpful customer-support assistant."},
                {"role": "user", "content": user.format(n=1000 + n)},
                {"role": "assistant", "content": agent.format(n=1000 + n)},
            ]
        }
        if with_meta:
            row["metadata"] = {"category": category, "conversation_id": f"c{seed}-{n}"}
        rows.append(row)
    return rows


def put_dataset(
    settings: Settings, train: list[dict], redacted: bool = True, version: str = "ds-test00000001"
) -> DatasetRef:
    client = s3_client(settings.s3)
    prefix = f"{settings.s3.datasets_prefix}{version}/"
    manifest = {"version": version, "format": "openai-chat"}
    if redacted:
        manifest["redaction"] = {"applied": True, "source": "staging/x/redacted.jsonl"}
    put_json(client, settings.s3.bucket, prefix + "manifest.json", manifest)
    put_jsonl(client, settings.s3.bucket, prefix + "train.jsonl", train)
    put_jsonl(client, settings.s3.bucket, prefix + "validation.jsonl", examples(4, seed=9))
    put_jsonl(client, settings.s3.bucket, prefix + "heldout.jsonl", examples(6, 8, True))
    put_jsonl(client, settings.s3.bucket, prefix + "golden.jsonl", examples(8, 7, True))
    return DatasetRef(
        version=version,
        prefix=prefix,
        train_key=prefix + "train.jsonl",
        validation_key=prefix + "validation.jsonl",
        heldout_key=prefix + "heldout.jsonl",
        golden_key=prefix + "golden.jsonl",
        counts={"train": len(train)},
        curated=len(train),
        quarantined=0,
        quarantine_key=None,
    )


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake
    assert fake.violations == [], "requests or responses outside the OpenAPI description"


def api_settings(settings: Settings, base_url: str, **api: object) -> Settings:
    """The test's settings with the API backend pointed at `base_url`, fast polling."""
    config = {
        "provider": "openai",
        "providers": {
            **{name: p.model_dump() for name, p in settings.training.api.providers.items()},
            "openai": {"base_url": base_url, "new_jobs_stop_on": "2027-01-06"},
        },
        "max_retries": 2,
        "timeout_seconds": 2,
        "poll_min_seconds": 0.01,
        "poll_max_seconds": 0.05,
        **api,
    }
    training = settings.training.model_copy(
        update={"backend": "api", "api": settings.training.api.model_validate(config)}
    )
    return settings.model_copy(update={"training": training})


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def test_job_lifecycle_to_a_fine_tuned_model(
    settings: Settings, server: FakeOpenAI, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.train.api.jobs")
    config = api_settings(settings, server.base_url, n_epochs=2)
    dataset = put_dataset(config, examples(24, seed=1))
    result = train_api.fn(config, dataset, "run-1")

    (job,) = server.job_list()
    assert job["status"] == "succeeded" and result.job_id == job["id"]
    assert result.fine_tuned_model == job["fine_tuned_model"]
    assert job["method"]["type"] == "supervised"
    assert job["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2
    assert job["metadata"] == {
        "retrain_key": result.idempotency_key,
        "dataset_version": dataset.version,
        "run_id": "run-1",
    }
    assert result.idempotency_key.startswith(dataset.version)
    assert job["seed"] == config.training.seed and job["validation_file"]
    assert {f["purpose"] for f in server.files.values()} == {"fine-tune"}
    # checkpoint metrics became the loss curve; cost computed from the provider's token count
    assert (
        result.loss_curve == sorted(result.loss_curve, reverse=True) and len(result.loss_curve) == 3
    )
    assert result.actual_cost_usd == pytest.approx(job["trained_tokens"] * 3.0 / 1e6, abs=1e-4)
    assert result.estimated_cost_usd > 0 and not result.attached
    messages = caplog.text
    assert "Fine-tuning job started" in messages and "checkpoint at step 30" in messages
    assert KEY not in messages


def test_a_rerun_attaches_to_the_existing_job(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    dataset = put_dataset(config, examples(20, seed=2))
    first = train_api.fn(config, dataset, "run-1")
    second = train_api.fn(config, dataset, "run-2")
    assert len(server.jobs) == 1 and second.attached
    assert second.fine_tuned_model == first.fine_tuned_model
    assert sum(1 for m, p in server.requests if m == "POST" and p.endswith("/files")) == 2


def test_a_task_retried_after_a_crash_mid_poll_attaches(
    settings: Settings, server: FakeOpenAI, key: str, prefect_api: None
) -> None:
    from prefect import flow

    config = api_settings(settings, server.base_url, max_retries=0)
    dataset = put_dataset(config, examples(20, seed=3))
    # the first retrieve of the job fails for good: the task crashes while the job runs on
    server.inject("GET", "/fine_tuning/jobs/ftjob", 500, times=1)

    @flow
    def run() -> str:
        return train_api.with_options(retry_delay_seconds=0)(config, dataset, "run-3").job_id

    job_id = run()
    assert len(server.jobs) == 1 and job_id in server.jobs
    # two attempts looked the job up; only the first created it
    assert server.requests.count(("GET", "/v1/fine_tuning/jobs")) == 2
    assert server.requests.count(("POST", "/v1/fine_tuning/jobs")) == 1
    assert server.jobs[job_id].body["status"] == "succeeded"


def test_a_429_storm_is_ridden_out(settings: Settings, server: FakeOpenAI, key: str) -> None:
    config = api_settings(settings, server.base_url, max_retries=6)
    dataset = put_dataset(config, examples(20, seed=4))
    for method, path in (
        ("POST", "/files"),
        ("POST", "/fine_tuning/jobs"),
        ("GET", "/fine_tuning"),
    ):
        server.inject(method, path, 429, times=5)
    result = train_api.fn(config, dataset, "run-4")
    assert result.fine_tuned_model and len(server.jobs) == 1 and not server.faults


def test_a_timeout_then_500_are_retried(settings: Settings, server: FakeOpenAI, key: str) -> None:
    config = api_settings(settings, server.base_url, max_retries=3, timeout_seconds=0.5)
    dataset = put_dataset(config, examples(20, seed=5))
    server.inject("POST", "/fine_tuning/jobs", "timeout")
    server.inject("POST", "/fine_tuning/jobs", 500)
    train_api.fn(config, dataset, "run-5")
    # the timed-out create never reached the handler, so still exactly one job
    assert len(server.jobs) == 1


def test_a_failed_job_fails_the_run_with_the_providers_message(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    dataset = put_dataset(config, examples(20, seed=6))
    server.fail_next_job = {"code": "invalid_training_file", "message": "line 7 has no messages"}
    with pytest.raises(FineTuneFailed, match="invalid_training_file: line 7 has no messages"):
        train_api.fn(config, dataset, "run-6")
    # a re-run does not attach to the failed job: it starts a new one
    train_api.fn(config, dataset, "run-7")
    assert [j["status"] for j in server.job_list()] == ["failed", "succeeded"]


def test_an_interrupted_run_cancels_its_job(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    client = api_client(config.training.api)
    dataset = put_dataset(config, examples(20, seed=7))
    file_id = client.files.create(
        file=("t.jsonl", open_bytes(dataset, config)), purpose="fine-tune"
    ).id
    job = client.fine_tuning.jobs.create(model=config.training.api.model, training_file=file_id)

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt  # what a Prefect cancellation or Ctrl-C delivers

    with pytest.raises(KeyboardInterrupt):
        JobWatcher(client, config.training.api, job).wait(sleep=interrupted)
    assert server.jobs[job.id].body["status"] == "cancelled"


def test_the_cancellation_hook_cancels_the_runs_unfinished_jobs(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    client = api_client(config.training.api)
    dataset = put_dataset(config, examples(20, seed=8))
    file_id = client.files.create(
        file=("t.jsonl", open_bytes(dataset, config)), purpose="fine-tune"
    ).id

    def job(run_id: str) -> str:
        return client.fine_tuning.jobs.create(
            model=config.training.api.model, training_file=file_id, metadata={"run_id": run_id}
        ).id

    mine, other = job("run-c"), job("run-other")
    assert cancel_jobs_of_run(config, "run-c") == [mine]
    assert server.jobs[mine].body["status"] == "cancelled"
    assert server.jobs[other].body["status"] != "cancelled"


def test_the_key_comes_from_a_prefect_secret_block(
    settings: Settings, server: FakeOpenAI, prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    Secret(value=KEY).save("retrain-openai-key-test", overwrite=True)
    config = api_settings(settings, server.base_url, api_key_secret_block="retrain-openai-key-test")
    assert api_key(config.training.api) == KEY
    api_client(config.training.api).fine_tuning.jobs.list()
    assert server.requests == [("GET", "/v1/fine_tuning/jobs")]

    missing = api_settings(settings, server.base_url, api_key_secret_block="no-such-block")
    with pytest.raises(MissingApiKey, match="api_key_secret_block"):
        train_api.fn(missing, put_dataset(missing, examples(20, seed=1)), "r")
    assert len(server.requests) == 1  # nothing more reached the provider


def open_bytes(dataset: DatasetRef, settings: Settings) -> bytes:
    client = s3_client(settings.s3)
    return client.get_object(Bucket=settings.s3.bucket, Key=dataset.train_key)["Body"].read()


# --- bad input: a clear error before any upload, nothing created at the provider -------------


def test_missing_api_key(settings: Settings, server: FakeOpenAI, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = api_settings(settings, server.base_url)
    with pytest.raises(MissingApiKey, match="OPENAI_API_KEY"):
        train_api.fn(config, put_dataset(config, examples(20, seed=1)), "r")
    assert server.requests == []


def test_unreachable_base_url(settings: Settings, key: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    config = api_settings(settings, f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(ProviderUnreachable, match=r"providers\.openai\.base_url"):
        train_api.fn(config, put_dataset(config, examples(20, seed=1)), "r")


def test_not_redacted_dataset_is_refused(settings: Settings, server: FakeOpenAI, key: str) -> None:
    config = api_settings(settings, server.base_url)
    dataset = put_dataset(config, examples(20, seed=1), redacted=False)
    with pytest.raises(NotRedacted, match=r"redaction\.applied"):
        train_api.fn(config, dataset, "r")
    assert server.requests == []


def test_personal_data_left_in_the_file_blocks_the_upload(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    rows = examples(20, seed=1)
    rows[5]["messages"][1]["content"] = "write to me at jane.doe@example.org please"
    rows[9]["messages"][2]["content"] = "Your card 4111 1111 1111 1111 was charged."
    with pytest.raises(NotRedacted, match="card x1, email x1") as error:
        train_api.fn(config, put_dataset(config, rows), "r")
    assert "jane.doe" not in str(error.value)
    assert server.requests == []
    # placeholders left by the redaction stage are not personal data
    assert not find_pii(["reach me at <EMAIL>, card <CREDIT_CARD>", "order {{Order Number}}"])


def test_format_errors_and_budget_overrun_stop_before_upload(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    rows = examples(20, seed=1)
    rows[3] = {"messages": [{"role": "customer", "content": "hi"}]}
    with pytest.raises(PreflightFailed, match="line 4: unrecognized_role"):
        train_api.fn(config, put_dataset(config, rows), "r")
    poor = api_settings(settings, server.base_url, budget_usd=0.0001)
    with pytest.raises(PreflightFailed, match="exceeds the budget"):
        train_api.fn(poor, put_dataset(poor, examples(20, seed=1), version="ds-test2"), "r")
    assert server.requests == []


def test_provider_cut_off_warns_refuses_or_reroutes(settings: Settings, key: str) -> None:
    config = api_settings(settings, "http://127.0.0.1:9/v1")
    assert choose_backend(config, today=date(2026, 11, 23)).notes == []  # 44 days left
    warned = choose_backend(config, today=date(2026, 12, 20))
    assert warned.backend == "api" and "2027-01-06 (17 days left)" in warned.notes[0]
    with pytest.raises(ProviderCutoff, match=r"since 2027-01-06.*azure, compatible"):
        choose_backend(config, today=date(2027, 1, 6))
    fallback = api_settings(settings, "http://127.0.0.1:9/v1", fallback_backend="local")
    rerouted = choose_backend(fallback, today=date(2027, 2, 1))
    assert rerouted.backend == "local" and "rerouted to the local backend" in rerouted.notes[0]
    per_model = api_settings(settings, "http://127.0.0.1:9/v1")
    per_model.training.api.providers["openai"].base_model_cutoffs[per_model.training.api.model] = (
        date(2026, 12, 1)
    )
    with pytest.raises(ProviderCutoff, match="since 2026-12-01"):
        choose_backend(per_model, today=date(2026, 12, 2))


# --- evaluating a hosted model ---------------------------------------------------------------


def test_generate_replies_rides_out_429_and_scores_the_fine_tuned_model_higher(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url, eval_concurrency=3, max_retries=6)
    dataset = put_dataset(config, examples(30, seed=11))
    tuned = train_api.fn(config, dataset, "run-e").fine_tuned_model
    golden = examples(9, seed=12, with_meta=True)
    prompts = [e["messages"][:-1] for e in golden]
    server.inject("POST", "/chat/completions", 429, times=4)
    tuned_replies = generate_replies(config, tuned, prompts)
    base_replies = generate_replies(config, config.training.api.model, prompts)
    assert len(tuned_replies) == 9 and server.chat_calls == 18
    tuned_rows = score_examples(lambda prompts: tuned_replies, golden)
    base_rows = score_examples(lambda prompts: base_replies, golden)
    tuned_score, base_score = aggregate(tuned_rows), aggregate(base_rows)
    assert tuned_score.rouge_l > base_score.rouge_l
    assert tuned_score.similarity > base_score.similarity
    assert tuned_score.loss is None and tuned_score.examples == 9  # no loss through an API


def test_hosted_scores_are_per_example_rows_keyed_by_conversation(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    """Rows a per-example scorer can join on `id`; the generator is a plain prompts → replies
    callable, and extra message keys never reach the chat-completions request."""
    config = api_settings(settings, server.base_url)
    golden = examples(6, seed=13, with_meta=True)
    golden[0]["messages"][1]["weight"] = 1  # a training-only key: stripped from the prompt
    del golden[5]["metadata"]["conversation_id"]
    rows = score_examples(hosted_replies(config, config.training.api.model), golden)
    assert [r.id for r in rows] == [f"c13-{n}" for n in range(5)] + ["5"]
    assert [r.category for r in rows] == [e["metadata"]["category"] for e in golden]
    assert all(0 <= r.rouge_l <= 1 for r in rows)
    overall = aggregate(rows)
    assert overall.rouge_l == pytest.approx(sum(r.rouge_l for r in rows) / 6, abs=1e-4)
    assert overall.examples == 6
    assert server.chat_calls == 6


def test_evaluation_prompts_with_personal_data_are_not_sent(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url)
    golden = examples(5, seed=14, with_meta=True)
    golden[2]["messages"][1]["content"] += " call me on +44 20 7946 0958"
    put_jsonl(s3_client(config.s3), config.s3.bucket, GOLDEN_KEY, golden)
    with pytest.raises(NotRedacted, match=r"golden set: .*phone x1"):
        model = ModelRef(label="challenger", kind="api", api_model=config.training.api.model)
        score_api_model(config, model, {"golden": GOLDEN_KEY})
    assert server.chat_calls == 0


def test_evaluation_cost_cap_stops_before_any_call(
    settings: Settings, server: FakeOpenAI, key: str
) -> None:
    config = api_settings(settings, server.base_url, eval_budget_usd=0.000001)
    with pytest.raises(EvalBudgetExceeded, match="eval_budget_usd"):
        generate_replies(config, "gpt-4o-mini-2024-07-18", [[{"role": "user", "content": "hi"}]])
    assert server.chat_calls == 0


def test_an_invalid_request_is_caught_by_the_spec(server: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="f", suffix="x" * 65)
    assert any("suffix" in v for v in server.violations)
    server.violations.clear()  # seen: the fixture would otherwise fail this test


def test_spec_copy_names_its_source_and_licence() -> None:
    from tests.helpers.fake_openai import SPEC_FILE

    spec = json.loads(SPEC_FILE.read_text())
    assert spec["info"]["license"]["name"] == "MIT"
    assert (SPEC_FILE.parent / "LICENSE-openai-openapi.txt").exists()
