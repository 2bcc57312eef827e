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


class TrainingSettings(BaseModel):
    """The fine-tuning step. Only LoRA knobs and budget live here; the rest are TRL defaults."""

    backend: Literal["local"] = Field(
        "local", description="Where fine-tuning runs: `local` = TRL/PEFT on this worker."
    )
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


class DriftSettings(BaseModel):
    """The monitor: data drift of recent logs and performance drift of the champion.

    Each statistic has an effect-size threshold; where the statistic has a test, drift also
    needs its p-value below `alpha`, so small windows do not fire on noise.
    """

    window_hours: int = Field(24, ge=1, description="Recent window the monitor looks at.")
    reference: str | None = Field(
        None,
        description="Reference batch (local JSONL/JSONL.gz file, folder or s3:// prefix) used "
        "when there is no champion whose card names its training data.",
    )
    min_records: int = Field(
        100, ge=20, description="A window with fewer records reports `not enough data`."
    )
    alpha: float = Field(0.01, gt=0, lt=0.5, description="Significance level of each test.")
    max_js_distance: float = Field(
        0.1, gt=0, le=1, description="Category/intent mix: Jensen-Shannon distance threshold."
    )
    max_ks_statistic: float = Field(
        0.1, gt=0, le=1, description="Text lengths: Kolmogorov-Smirnov statistic threshold."
    )
    max_oov_increase: float = Field(
        0.03, gt=0, le=1, description="Out-of-vocabulary token rate above the reference's own."
    )
    embedding_sample: int = Field(
        300, ge=50, description="Conversations per side embedded for the domain classifier."
    )
    embedding_min_auc: float = Field(
        0.55,
        gt=0.5,
        lt=1,
        description="Domain classifier ROC-AUC threshold (Evidently uses 0.55); the AUC "
        "must also beat a random classifier at `alpha`.",
    )
    performance_examples: int = Field(
        64,
        ge=10,
        description="Recent conversations the champion is scored on: the monitor's largest cost "
        "(SmolLM2 forward passes on CPU), and enough for a bootstrap interval.",
    )
    performance_min_examples: int = Field(
        30, ge=10, description="Fewer scored conversations report `not enough data`."
    )
    max_loss_increase: float = Field(
        0.10,
        gt=0,
        description="Relative loss increase over promotion time; the bootstrap interval's lower "
        "end must exceed it.",
    )
    confidence_level: float = Field(0.95, gt=0.5, lt=1, description="Bootstrap interval level.")
    bootstrap_resamples: int = Field(2000, ge=100, description="Bootstrap resamples.")
    resolve_fraction: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="Hysteresis: an active drift resolves only once its statistic is below "
        "this fraction of the threshold.",
    )
    cooldown_hours: float = Field(
        24, ge=0, description="No second `retrain.drift.detected` within this time."
    )
    history_runs: int = Field(30, ge=2, description="Runs kept for the trend chart.")
    seed: int = Field(0, description="Seed for sampling, cross-validation and bootstrap.")


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
    drift: DriftSettings = Field(default_factory=DriftSettings)

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
