"""What any training backend answers: the backend-neutral result the registry, reports and the
fine-tune hand-off read. The local trainer (tasks/train/local.py) fills it; the API backend
(tasks/train/api/jobs.py) answers `ApiTrainResult`, which adds the job and its provider.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TrainResult(BaseModel):
    adapter_dir: str = Field(description="What the registry uploads: adapter or full weights.")
    base_model: str
    base_model_dir: str
    method: str = "lora"
    merged_dir: str | None = None
    steps: int
    planned_steps: int = 0
    train_examples: int = Field(description="Examples in the training window.")
    examples_seen: int = 0
    fraction_seen: float = Field(0.0, description="examples_seen / train_examples (epochs > 1)")
    tokens_seen: int = Field(0, description="Non-padding tokens the trainer processed.")
    processes: int = Field(1, description="Training processes of one data-parallel group.")
    tokens_per_second: float = 0.0
    truncated_examples: int = 0
    train_loss: float
    best_val_loss: float | None = None
    val_curve: list[tuple[int, float]] = Field(default_factory=list)
    loss_curve: list[float]
    stopped_by: str = "budget"
    seconds: float
    device: str
    precision: str = "fp32"
    batching: str = "padded, grouped by length"
    batching_reason: str = ""
    dataset_versions: list[str] = Field(default_factory=list)
    init: str = "base"
    resumed_from_step: int | None = None
    training_args: dict[str, Any] = Field(default_factory=dict)


class ApiTrainResult(TrainResult):
    """A hosted fine-tune; TrainResult's fields keep the summary and model card unchanged
    (`adapter_dir` is empty: the weights stay with the provider)."""

    provider: str
    job_id: str
    fine_tuned_model: str
    trained_tokens: int | None
    estimated_cost_usd: float
    actual_cost_usd: float | None
    idempotency_key: str
    attached: bool

    def api_record(self) -> dict[str, Any]:
        """What `api.json` in a registry version holds: enough to call and audit the model."""
        return {
            "provider": self.provider,
            "base_model": self.base_model,
            "fine_tuned_model": self.fine_tuned_model,
            "job_id": self.job_id,
            "trained_tokens": self.trained_tokens,
            "estimated_cost_usd": self.estimated_cost_usd,
            "actual_cost_usd": self.actual_cost_usd,
            "idempotency_key": self.idempotency_key,
        }
