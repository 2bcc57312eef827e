"""What a training run tells people: compact log lines, a live progress artifact, a loss chart
and a Hugging Face model card. Only numbers, names and dataset versions: never example text.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.run_context import in_prefect_run, run_logger

if TYPE_CHECKING:
    from tasks.config import Settings
    from tasks.prepare.window import TrainingWindow
    from tasks.train.result import TrainResult

PROGRESS_KEY = "retrain-training-progress"


@dataclass
class TrainLog:
    """Loss, validation loss and learning rate as training goes, and the wall-clock budget."""

    planned_steps: int
    max_minutes: float | None = None
    losses: list[float] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    budget_hit: bool = False
    started: float = field(default_factory=time.perf_counter)

    def line(self, step: int, logs: dict[str, Any]) -> str | None:
        """One compact log line per logging step, e.g. `step 3/24  loss 2.1034  lr 9.2e-04`."""
        parts = []
        if "loss" in logs:
            self.losses.append(float(logs["loss"]))
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            self.val_curve.append((step, float(logs["eval_loss"])))
            parts.append(f"val loss {logs['eval_loss']:.4f}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.1e}")
        return f"step {step}/{self.planned_steps}  " + "  ".join(parts) if parts else None

    def over_budget(self) -> bool:
        minutes = (time.perf_counter() - self.started) / 60
        self.budget_hit = self.max_minutes is not None and minutes >= self.max_minutes
        return self.budget_hit


def _any_process(flag: bool, device: Any) -> bool:
    """True when any training process says so: launched processes must stop at the same step,
    or the others wait forever at the next gradient sync (each reads its own clock)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    vote = torch.tensor([int(flag)], device=device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def progress_callback(train_log: TrainLog):
    """A TrainerCallback: compact run-log lines, a progress artifact, the `max_minutes` stop."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from transformers import TrainerCallback

    class PrefectProgress(TrainerCallback):
        artifact_id = None

        def on_train_begin(self, args, state, control, **kwargs):
            train_log.started = time.perf_counter()
            if in_prefect_run():
                self.artifact_id = create_progress_artifact(
                    0.0, key=PROGRESS_KEY, description="4 fine-tune: optimizer steps done"
                )

        def on_step_end(self, args, state, control, **kwargs):
            if self.artifact_id is not None:
                update_progress_artifact(
                    self.artifact_id, 100.0 * state.global_step / max(state.max_steps, 1)
                )
            last = state.global_step >= state.max_steps
            if _any_process(train_log.over_budget(), args.device) or last:
                control.should_training_stop = True
                # judge the last adapter too before the best one is picked
                control.should_evaluate = control.should_save = args.eval_strategy != "no"

        def on_train_end(self, args, state, control, **kwargs):
            if self.artifact_id is not None:
                update_progress_artifact(self.artifact_id, 100.0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            line = train_log.line(state.global_step, logs or {})
            if line and state.is_world_process_zero:  # one log, not one per launched process
                run_logger(__name__).info(line)

    return PrefectProgress()


def loss_chart_png(result: TrainResult) -> bytes:
    """Train loss per step and validation loss per evaluation, as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3), dpi=100)
    axes = figure.add_subplot()
    axes.plot(range(1, len(result.loss_curve) + 1), result.loss_curve, label="train loss")
    if result.val_curve:
        steps, losses = zip(*result.val_curve, strict=True)
        axes.plot(steps, losses, "o-", label="validation loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def loss_chart_markdown(result: TrainResult) -> str:
    """The chart embedded as a data URI, so the artifact needs no file server."""
    encoded = base64.b64encode(loss_chart_png(result)).decode()
    return f"![loss curve](data:image/png;base64,{encoded})"


def summary_rows(result: TrainResult) -> list[dict[str, Any]]:
    rows = {
        "steps": f"{result.steps} of {result.planned_steps} planned, stopped by "
        f"{result.stopped_by}",
        "examples seen": f"{result.examples_seen} of {result.train_examples} in the window "
        f"({result.fraction_seen:.1%})",
        "dataset versions": ", ".join(result.dataset_versions),
        "tokens": result.tokens_seen,
        "tokens/s": result.tokens_per_second,
        "train loss": round(result.train_loss, 4),
        "best validation loss": None
        if result.best_val_loss is None
        else round(result.best_val_loss, 4),
        "truncated examples": result.truncated_examples,
        "wall time s": result.seconds,
        "device": f"{result.device} ({result.precision})",
        "batching": f"{result.batching}: {result.batching_reason}",
        "method": f"{result.method}, init {result.init}",
    }
    return [{"what": k, "value": v} for k, v in rows.items()]


def hf_model_card(result: TrainResult, settings: Settings, window: TrainingWindow) -> str:
    """A Hugging Face model card (README.md): base model, data versions, config, metrics."""
    library = "peft" if result.method == "lora" else "transformers"
    config = settings.training.model_dump(mode="json")
    lines = [
        "---",
        f"base_model: {result.base_model}",
        f"library_name: {library}",
        "pipeline_tag: text-generation",
        "tags: [support-retrain, trl, sft" + (", lora]" if result.method == "lora" else "]"),
        "---",
        "",
        f"# {settings.model_name}: {result.method} fine-tune of {result.base_model}",
        "",
        "Trained by the `support-retrain` flow with TRL's SFTTrainer on assistant turns only.",
        "",
        "## Data",
        "",
        "| dataset version | created | train examples used |",
        "|---|---|---|",
        *[f"| {v.version} | {v.created_at} | {v.examples} |" for v in window.versions],
        "",
        f"Examples seen: {result.examples_seen} of {result.train_examples} "
        f"({result.fraction_seen:.1%}); {result.truncated_examples} truncated at "
        f"{settings.training.max_length} tokens.",
        "",
        "## Training",
        "",
        *[f"- {row['what']}: {row['value']}" for row in summary_rows(result)],
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
    ]
    return "\n".join(lines) + "\n"
