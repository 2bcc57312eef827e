"""One typed settings object for the whole product.

Values come, highest priority first, from: keyword arguments, environment variables with the
`RETRAIN_` prefix (nested fields joined by `__`, e.g. `RETRAIN_S3__BUCKET=my-bucket`), a TOML
file (`retrain.toml` in the working directory, or the path in `RETRAIN_CONFIG_FILE`), and the
defaults below. Credentials are never part of it: boto3 reads them from its usual chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles).

    python -c "from tasks.config import Settings; print(Settings().model_dump_json(indent=2))"
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "retrain"


class S3Settings(BaseModel):
    """Where the data, models and reports live."""

    bucket: str = Field("support-retrain", description="The one bucket everything lives in.")
    endpoint_url: str | None = Field(
        None, description="S3 endpoint; None means AWS. `retrain demo` sets a local moto server."
    )
    region: str = Field("us-east-1", description="Region passed to boto3.")
    raw_prefix: str = Field("raw/support-logs/", description="Incoming logs (read only).")
    staging_prefix: str = Field("staging/", description="Accepted records of a run, per run id.")
    quarantine_prefix: str = Field("quarantine/", description="Rejected records with reasons.")
    datasets_prefix: str = Field("datasets/", description="Curated, versioned datasets.")
    golden_prefix: str = Field("heldout/golden/", description="Frozen evaluation set.")
    state_prefix: str = Field("state/", description="Ingest watermark and other small state.")
    models_prefix: str = Field("models/", description="Model registry root.")
    reports_prefix: str = Field("reports/", description="Data Docs and evaluation reports.")

    @field_validator(
        "raw_prefix",
        "staging_prefix",
        "quarantine_prefix",
        "datasets_prefix",
        "golden_prefix",
        "state_prefix",
        "models_prefix",
        "reports_prefix",
    )
    @classmethod
    def _ends_with_slash(cls, prefix: str) -> str:
        if not prefix.endswith("/"):
            raise ValueError(f"an S3 prefix must end with '/', got {prefix!r}; add the slash")
        return prefix


class QualitySettings(BaseModel):
    """The data gate in front of training."""

    suite: str = Field("support_logs", description="Suite name: expectations/<suite>.json.")
    min_records: int = Field(50, ge=1, description="Fewer accepted records fail the gate.")
    max_quarantine_fraction: float = Field(
        0.2, ge=0, le=1, description="A batch with more rejected records than this fails the gate."
    )


class DatasetSettings(BaseModel):
    """How curated examples are built and split."""

    system_prompt: str = Field(
        "You are a helpful customer-support assistant.",
        description="System message put in front of every training and evaluation example.",
    )
    golden_fraction: float = Field(
        0.03, gt=0, lt=0.5, description="Share of conversations (by id hash) held out as golden."
    )
    golden_max_examples: int = Field(96, ge=8, description="Cap on the frozen golden set.")
    validation_fraction: float = Field(0.05, gt=0, lt=0.5, description="Validation share.")


class ProviderSettings(BaseModel):
    """One fine-tuning provider speaking the OpenAI API: where it is and when it stops."""

    base_url: str | None = Field(
        None,
        description="API root, e.g. https://<resource>.openai.azure.com/openai/v1 for Azure "
        "or any OpenAI-compatible endpoint; None = api.openai.com.",
    )
    api_version: str | None = Field(
        None, description="Sent as the `api-version` query parameter (Azure); None = not sent."
    )
    new_jobs_stop_on: date | None = Field(
        None,
        description="First day the provider refuses new fine-tuning jobs; None = no known "
        "end. Runs warn within `api.cutoff_warning_days` of it and are refused after it.",
    )
    base_model_cutoffs: dict[str, date] = Field(
        default_factory=dict, description="Earlier cut-off for a single base model."
    )


def _default_providers() -> dict[str, ProviderSettings]:
    # OpenAI announced that new fine-tuning jobs stop on 2027-01-06.
    return {
        "openai": ProviderSettings(new_jobs_stop_on=date(2027, 1, 6)),
        "azure": ProviderSettings(),
        "compatible": ProviderSettings(),
    }


class ApiSettings(BaseModel):
    """The `api` fine-tuning backend: an OpenAI-compatible fine-tuning API via the openai SDK.

    The key is never part of the settings: it comes from the Prefect Secret block named in
    `api_key_secret_block`, else from the environment variable named in `api_key_env`.
    """

    provider: str = Field("openai", description="A key of `providers`.")
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    model: str = Field("gpt-4o-mini-2024-07-18", description="Base model to fine-tune.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Env variable holding the key.")
    api_key_secret_block: str | None = Field(
        None, description="Name of a Prefect Secret block holding the key (checked first)."
    )
    timeout_seconds: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(5, ge=0, description="SDK retries on 429/5xx/connection errors.")
    n_epochs: int | Literal["auto"] = Field("auto", description="Epochs; `auto` = heuristic.")
    batch_size: int | Literal["auto"] = Field("auto", description="Provider batch size.")
    learning_rate_multiplier: float | Literal["auto"] = Field("auto")
    suffix: str = Field("support-bot", max_length=64, description="Fine-tuned model name part.")
    context_limit: int = Field(
        65536, ge=256, description="Training-context tokens per example; longer is an error."
    )
    price_per_million_training_tokens: dict[str, float] = Field(
        default_factory=lambda: {
            "gpt-4o-mini-2024-07-18": 3.0,
            "gpt-4o-2024-08-06": 25.0,
            "gpt-4.1-mini-2025-04-14": 5.0,
            "gpt-4.1-2025-04-14": 25.0,
        },
        description="USD per 1M trained tokens (billable tokens * epochs) by base model.",
    )
    budget_usd: float | None = Field(
        20.0, ge=0, description="A run whose estimated cost exceeds this stops before upload."
    )
    cutoff_warning_days: int = Field(30, ge=0, description="Warn this many days before cut-off.")
    fallback_backend: Literal["local"] | None = Field(
        None,
        description="`local` reroutes a run past the provider's cut-off to the local "
        "backend; None refuses the run.",
    )
    poll_min_seconds: float = Field(5.0, gt=0, description="First wait between job polls.")
    poll_max_seconds: float = Field(60.0, gt=0, description="Longest wait between job polls.")
    max_wait_hours: float = Field(24.0, gt=0, description="Give up polling after this long.")
    eval_concurrency: int = Field(4, ge=1, description="Parallel chat completions in evaluation.")
    eval_max_tokens: int = Field(256, ge=1, description="Reply length cap when evaluating.")
    eval_budget_usd: float = Field(2.0, ge=0, description="Cost cap of one evaluation.")
    eval_price_per_million_tokens: float = Field(
        1.0, ge=0, description="USD per 1M prompt + reply tokens of the fine-tuned model."
    )


class TrainingSettings(BaseModel):
    """The fine-tuning step. Only LoRA knobs and budget live here; the rest are TRL defaults."""

    backend: Literal["local", "api"] = Field(
        "local",
        description="Where fine-tuning runs: `local` = TRL/PEFT on this worker, `api` = an "
        "OpenAI-compatible fine-tuning API (settings in `training.api`).",
    )
    api: ApiSettings = Field(default_factory=ApiSettings)
    base_model: str = Field(
        "smollm2-135m-instruct",
        description="`smollm2-135m-instruct` (the packaged SmolLM2) or a directory of a "
        "transformers model saved as safetensors.",
    )
    max_steps: int = Field(24, ge=1, description="Optimizer steps per run.")
    batch_size: int = Field(8, ge=1, description="Examples per device step.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate of the LoRA adapter.")
    max_length: int = Field(160, ge=16, description="Tokens per example after truncation.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator.")
    lora_target_modules: str = Field("all-linear", description="PEFT target_modules.")
    seed: int = Field(42, description="Seed for data order and adapter init.")


class EvaluationSettings(BaseModel):
    """How the challenger is compared with the champion: the promotion policy."""

    batch_size: int = Field(16, ge=1, description="Examples per forward pass when scoring.")
    min_improvement: float = Field(
        0.01,
        ge=0,
        description="Relative drop in golden loss the challenger needs to be promoted (0.01 = 1%).",
    )
    max_slice_regression: float = Field(
        0.10,
        ge=0,
        description="Guardrail: no golden category, and not the recent held-out set, may get "
        "worse than the incumbent by more than this (relative loss).",
    )
    slice_min_examples: int = Field(
        5, ge=1, description="Categories with fewer golden examples are reported, not gated."
    )


class Settings(BaseSettings):
    """Everything a retrain run needs to know, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="RETRAIN_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    model_name: str = Field("support-bot", description="Registry name of the chatbot model.")
    cache_dir: Path = Field(
        default_factory=_default_cache_dir, description="Local cache for converted models."
    )
    s3: S3Settings = Field(default_factory=S3Settings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("RETRAIN_CONFIG_FILE", "retrain.toml")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))


RUNTIME_ENV = {
    # Nothing may be fetched from a model hub at run time: fail instead of trying.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # No usage analytics leave the machine.
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The ephemeral Prefect server migrates its database on first start: on 2 cores that can
    # take longer than Prefect's 20 s default.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def apply_runtime_env() -> None:
    """Process-wide defaults every entry point sets before loading models or starting Prefect.

    Existing environment values win, so an operator can still override any of them.
    """
    for name, value in RUNTIME_ENV.items():
        os.environ.setdefault(name, value)
