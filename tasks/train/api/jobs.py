"""API fine-tuning backend: a supervised job on any OpenAI-compatible fine-tuning API.

The official `openai` SDK talks to OpenAI, Azure OpenAI (`base_url` + `api_version`) or any
compatible provider (`base_url`). Before anything is uploaded: the provider's cut-off, the API
key, the redaction record of the dataset, the pre-flight checks with the budget gate, and a
second PII check. Then, idempotently:

    key = <dataset version>-<hash of the job settings>        (job metadata `retrain_key`)
    an unfinished or succeeded job with that key exists → attach to it (a retried task or a
                                                          re-run flow never starts a second one)
    else → upload train/validation (purpose fine-tune), create the job (method supervised)

The job is polled with backoff; its events and checkpoint metrics go to the Prefect log and a
progress artifact. `failed` / `cancelled` end the run with the provider's error; on Prefect
cancellation (or any interrupt) the job is cancelled at the provider.

    RETRAIN_TRAINING__BACKEND=api OPENAI_API_KEY=... retrain run
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import openai
from prefect import task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks.config import ApiSettings, Settings
from tasks.prepare.dataset import DatasetRef
from tasks.run_context import in_prefect_run, run_logger
from tasks.storage import layout
from tasks.storage.s3 import get_json, s3_client
from tasks.train.api.guards import ProviderCutoff, choose_backend, require_no_pii, require_redacted
from tasks.train.api.preflight import PreflightReport, preflight, render
from tasks.train.result import ApiTrainResult

RUNNING = ("validating_files", "queued", "running", "paused")
ATTACHABLE = (*RUNNING, "succeeded")  # a failed or cancelled job is retried by a new job
PROGRESS = {"validating_files": 0.02, "queued": 0.05, "running": 0.1, "succeeded": 1.0}


class MissingApiKey(RuntimeError):
    pass


class ProviderUnreachable(RuntimeError):
    pass


class PreflightFailed(RuntimeError):
    pass


class FineTuneFailed(RuntimeError):
    """The provider ended the job as failed or cancelled; its error is in the message."""


# --- client ---------------------------------------------------------------------------------


def api_key(api: ApiSettings) -> str:
    """From the Prefect Secret block if one is named, else the environment. Never logged."""
    if api.api_key_secret_block:
        from prefect.blocks.system import Secret

        try:
            return Secret.load(api.api_key_secret_block).get()
        except ValueError as error:
            raise MissingApiKey(
                f"no Prefect Secret block named {api.api_key_secret_block!r} "
                "(`training.api.api_key_secret_block`): create it, or unset the setting to "
                f"read ${api.api_key_env}"
            ) from error
    key = os.environ.get(api.api_key_env, "")
    if not key:
        raise MissingApiKey(
            f"no API key: set the environment variable {api.api_key_env} "
            "(`training.api.api_key_env`) or name a Prefect Secret block in "
            "`training.api.api_key_secret_block`"
        )
    return key


def api_client(api: ApiSettings) -> openai.OpenAI:
    provider = api.providers[api.provider]
    return openai.OpenAI(
        api_key=api_key(api),
        base_url=provider.base_url,
        default_query={"api-version": provider.api_version} if provider.api_version else None,
        timeout=api.timeout_seconds,
        max_retries=api.max_retries,  # the SDK backs off on 429, 5xx and connection errors
    )


def _where(api: ApiSettings) -> str:
    base = api.providers[api.provider].base_url or "https://api.openai.com/v1"
    return f"{base} (`training.api.providers.{api.provider}.base_url`)"


# --- idempotency ----------------------------------------------------------------------------


def idempotency_key(settings: Settings, dataset_version: str) -> str:
    """Same dataset + same job settings = same key = at most one job."""
    api = settings.training.api
    job_settings = {
        "provider": api.provider,
        "model": api.model,
        "n_epochs": api.n_epochs,
        "batch_size": api.batch_size,
        "learning_rate_multiplier": api.learning_rate_multiplier,
        "suffix": api.suffix,
        "seed": settings.training.seed,
    }
    digest = hashlib.sha256(json.dumps(job_settings, sort_keys=True).encode()).hexdigest()
    return f"{dataset_version}-{digest[:12]}"


def find_job(client: openai.OpenAI, api: ApiSettings, key: str) -> Any | None:
    """The newest job for this key that is still running or has succeeded."""
    try:
        jobs = client.fine_tuning.jobs.list(metadata={"retrain_key": key}, limit=20)
    except openai.APIConnectionError as error:
        raise ProviderUnreachable(
            f"cannot reach the fine-tuning API at {_where(api)}: {error}; nothing was uploaded"
        ) from error
    except openai.AuthenticationError as error:
        raise MissingApiKey(
            f"the provider refused the API key from {api.api_key_secret_block or api.api_key_env}"
            f": {error.message}"
        ) from error
    for job in jobs.data:
        if (job.metadata or {}).get("retrain_key") == key and job.status in ATTACHABLE:
            return job
    return None


# --- checks before upload -------------------------------------------------------------------


def _read_lines(settings: Settings, key: str) -> bytes:
    client = s3_client(settings.s3)
    return client.get_object(Bucket=settings.s3.bucket, Key=key)["Body"].read()


def checked_files(settings: Settings, dataset: DatasetRef) -> tuple[bytes, bytes, PreflightReport]:
    """Training and validation bytes that passed every pre-upload check."""
    manifest_key = layout.in_prefix(dataset.prefix, layout.DATASET_MANIFEST)
    manifest = get_json(s3_client(settings.s3), settings.s3.bucket, manifest_key)
    require_redacted(manifest.body or {}, dataset.version)
    train = _read_lines(settings, dataset.train_key)
    validation = _read_lines(settings, dataset.validation_key)
    report = preflight(
        train.decode().splitlines(),
        validation.decode().splitlines() if validation.strip() else None,
        settings.training.api,
    )
    if not report.fit:
        raise PreflightFailed(f"dataset {dataset.version}: nothing uploaded.\n{render(report)}")
    for name, data in (("training file", train), ("validation file", validation)):
        require_no_pii(
            [json.loads(line) for line in data.splitlines() if line.strip()],
            name,
            settings.pii.allow_list,
        )
    return train, validation, report


# --- job lifecycle --------------------------------------------------------------------------


def create_job(
    client: openai.OpenAI,
    settings: Settings,
    train: bytes,
    validation: bytes,
    report: PreflightReport,
    metadata: dict[str, str],
) -> Any:
    """Upload the files and create the job; on any failure delete what was uploaded."""
    api = settings.training.api
    uploaded: list[str] = []
    try:
        train_file = client.files.create(
            file=(f"{metadata['dataset_version']}-train.jsonl", io.BytesIO(train)),
            purpose="fine-tune",
        )
        uploaded.append(train_file.id)
        validation_id = None
        if validation.strip():
            validation_file = client.files.create(
                file=(f"{metadata['dataset_version']}-validation.jsonl", io.BytesIO(validation)),
                purpose="fine-tune",
            )
            uploaded.append(validation_file.id)
            validation_id = validation_file.id
        hyperparameters = {
            "n_epochs": api.n_epochs if api.n_epochs != "auto" else report.n_epochs,
            "batch_size": api.batch_size,
            "learning_rate_multiplier": api.learning_rate_multiplier,
        }
        return client.fine_tuning.jobs.create(
            model=api.model,
            training_file=train_file.id,
            validation_file=validation_id,
            method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            suffix=api.suffix,
            seed=settings.training.seed,
            metadata=metadata,
        )
    except BaseException:
        for file_id in uploaded:  # nothing half-created on the provider side
            try:
                client.files.delete(file_id)
            except openai.OpenAIError as cleanup:
                run_logger(__name__).warning(
                    "could not delete uploaded file %s: %s", file_id, cleanup
                )
        raise


class JobWatcher:
    """Polls one job; streams new events and checkpoint metrics to the log and artifacts."""

    def __init__(self, client: openai.OpenAI, api: ApiSettings, job: Any) -> None:
        self.client, self.api, self.job = client, api, job
        self.seen_events: set[str] = set()
        self.checkpoints: list[dict[str, Any]] = []
        self.progress_id = None
        self.progress = 0.0

    def _new_events(self) -> list[Any]:
        page = self.client.fine_tuning.jobs.list_events(self.job.id, limit=100)
        fresh = [e for e in page.data if e.id not in self.seen_events]
        self.seen_events.update(e.id for e in fresh)
        return list(reversed(fresh))  # the API lists newest first

    def _report(self) -> None:
        log = run_logger(__name__)
        for event in self._new_events():
            log.log(
                logging.WARNING if event.level != "info" else logging.INFO,
                "fine-tune %s: %s",
                self.job.id,
                event.message,
            )
            data = event.data or {}
            if data.get("step") and data.get("total_steps"):
                self.progress = max(self.progress, 0.1 + 0.85 * data["step"] / data["total_steps"])
        checkpoints = self.client.fine_tuning.jobs.checkpoints.list(self.job.id, limit=100)
        known = {c["step"] for c in self.checkpoints}
        for checkpoint in sorted(checkpoints.data, key=lambda c: c.step_number):
            if checkpoint.step_number not in known:
                metrics = checkpoint.metrics.model_dump(exclude_none=True)
                self.checkpoints.append({"step": checkpoint.step_number, **metrics})
                log.info("checkpoint at step %s: %s", checkpoint.step_number, metrics)
        self.progress = max(self.progress, PROGRESS.get(self.job.status, self.progress))
        self._update_progress()

    def _update_progress(self) -> None:
        if not in_prefect_run():
            return  # called as task.fn(): the log is enough
        description = f"fine-tuning job {self.job.id}: {self.job.status}"
        if self.progress_id is None:
            self.progress_id = create_progress_artifact(
                self.progress * 100, key="retrain-api-progress", description=description
            )
        else:
            update_progress_artifact(self.progress_id, self.progress * 100, description)

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> Any:
        """Poll until the job ends; cancel it at the provider if this run is interrupted."""
        delay = self.api.poll_min_seconds
        deadline = time.monotonic() + self.api.max_wait_hours * 3600
        try:
            self._report()
            while self.job.status in RUNNING:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"fine-tuning job {self.job.id} still {self.job.status} after "
                        f"{self.api.max_wait_hours} h (`training.api.max_wait_hours`); a re-run "
                        "attaches to it"
                    )
                sleep(delay)
                delay = min(delay * 2, self.api.poll_max_seconds)
                self.job = self.client.fine_tuning.jobs.retrieve(self.job.id)
                self._report()
        except Exception:
            raise  # a crash of ours or a transient API error: a retry attaches to the job
        except BaseException:
            # Prefect cancellation (termination signal), Ctrl-C: stop paying for the job
            run_logger(__name__).warning(
                "run interrupted: cancelling fine-tuning job %s", self.job.id
            )
            self.client.fine_tuning.jobs.cancel(self.job.id)
            raise
        return self.job


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: network trouble and provider hiccups mid-poll."""
    try:
        state.result()
    except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError):
        return True
    except Exception:
        return False
    return False


def _cost(tokens: int | None, api: ApiSettings) -> float | None:
    if tokens is None:
        return None
    return round(tokens * api.price_per_million_training_tokens[api.model] / 1_000_000, 4)


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_transient)
def train_api(settings: Settings, dataset: DatasetRef, run_id: str) -> ApiTrainResult:
    """Fine-tune through the provider's API; attach to this dataset's job if one exists."""
    started = time.perf_counter()
    api = settings.training.api
    choice = choose_backend(settings)  # raises past the cut-off unless a fallback is set
    if choice.backend != "api":
        raise ProviderCutoff("; ".join(choice.notes))
    client = api_client(api)  # a missing key fails here, before any data is read
    train, validation, report = checked_files(settings, dataset)
    log = run_logger(__name__)
    log.info("pre-flight passed:\n%s", render(report))

    key = idempotency_key(settings, dataset.version)
    job = find_job(client, api, key)
    attached = job is not None
    if attached:
        log.info("attaching to fine-tuning job %s (%s) for key %s", job.id, job.status, key)
    else:
        metadata = {"retrain_key": key, "dataset_version": dataset.version, "run_id": run_id}
        job = create_job(client, settings, train, validation, report, metadata)
        log.info("created fine-tuning job %s for key %s", job.id, key)

    watcher = JobWatcher(client, api, job)
    job = watcher.wait()
    _checkpoint_table(watcher.checkpoints, job.id)
    if job.status != "succeeded":
        error = job.error
        detail = f"{error.code}: {error.message}" if error and error.message else "no error given"
        raise FineTuneFailed(f"fine-tuning job {job.id} ended {job.status}: {detail}")

    losses = [c["train_loss"] for c in watcher.checkpoints if "train_loss" in c]
    return ApiTrainResult(
        adapter_dir="",
        base_model=api.model,
        base_model_dir="",
        steps=max((c["step"] for c in watcher.checkpoints), default=0),
        train_examples=report.train.examples,
        train_loss=losses[-1] if losses else -1.0,
        loss_curve=losses,
        seconds=round(time.perf_counter() - started, 1),
        device=f"api:{api.provider}",
        provider=api.provider,
        job_id=job.id,
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        estimated_cost_usd=report.estimated_cost_usd,
        actual_cost_usd=_cost(job.trained_tokens, api),
        idempotency_key=key,
        attached=attached,
    )


def _checkpoint_table(checkpoints: list[dict[str, Any]], job_id: str) -> None:
    if checkpoints and in_prefect_run():
        create_table_artifact(
            checkpoints, key="retrain-api-checkpoints", description=f"checkpoints of {job_id}"
        )


def cancel_jobs_of_run(settings: Settings, run_id: str) -> list[str]:
    """Cancel this run's unfinished jobs (the flow's on-cancellation hook calls it)."""
    client = api_client(settings.training.api)
    jobs = client.fine_tuning.jobs.list(metadata={"run_id": run_id}, limit=20)
    cancelled = []
    for job in jobs.data:
        if job.status in RUNNING:
            client.fine_tuning.jobs.cancel(job.id)
            cancelled.append(job.id)
    return cancelled


def cancel_on_flow_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow `on_cancellation` hook: a cancelled run leaves no job running at the provider."""
    raw = (flow_run.parameters or {}).get("settings")
    settings = Settings.model_validate(raw) if raw else Settings()
    if settings.training.backend != "api":
        return
    try:
        cancelled = cancel_jobs_of_run(settings, str(flow_run.id))
    except (MissingApiKey, openai.OpenAIError) as error:
        run_logger(__name__).error("could not cancel this run's fine-tuning jobs: %s", error)
        return
    run_logger(__name__).warning("run cancelled: cancelled fine-tuning jobs %s", cancelled)
