"""Local fine-tuning backend: TRL's SFTTrainer + PEFT on this worker, GPU or CPU.

Each chat example becomes a prompt/completion pair (everything up to the last agent turn →
that turn), so the loss is computed on assistant tokens only. The entry point is a plain
function of (settings, dataset references) → a saved adapter, so another backend can replace it.

Reads top to bottom: setup (device, precision, batching) → data (window, truncation report,
budget) → model (safetensors only, LoRA / full / freeze) → trainer (validation, early stopping,
progress) → save (safetensors, tokenizer, model card; no pickles).

    RETRAIN_TRAINING__MAX_STEPS=5 retrain run     # a short run against the configured bucket
    python bench/train_throughput.py              # tokens/s against TRL's defaults
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from tasks.config import Settings, TrainingSettings
from tasks.prepare.dataset import DatasetRef
from tasks.prepare.window import (
    TrainingWindow,
    in_content_order,
    load_window_examples,
    single_version_window,
)
from tasks.run_context import run_logger
from tasks.train.base_model import resolve_base_model
from tasks.train.checkpoints import download_latest, s3_sync_callback, save_every_minutes
from tasks.train.report import TrainLog, hf_model_card, progress_callback
from tasks.train.result import TrainResult

# PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model; no
# argument avoids it, so exactly that warning is silenced where PEFT wraps, and nothing else.
PEFT_CHECKPOINTING_WARNING = r"`is_gradient_checkpointing` is deprecated"


@dataclass(frozen=True)
class HardwarePlan:
    """Device, precision and batching, decided once from what this machine supports."""

    device: str
    bf16: bool
    gradient_checkpointing: bool
    padding_free: bool
    attn_implementation: str
    reason: str

    @property
    def batching(self) -> str:
        return "padding-free (packed)" if self.padding_free else "padded, grouped by length"


def plan_hardware(
    training: TrainingSettings,
    cuda: bool,
    bf16_supported: bool,
    flash_attention: bool,
) -> HardwarePlan:
    """Pick precision and batching for the hardware (pure, so it is testable without a GPU)."""
    varlen = cuda and flash_attention
    if training.batching == "padding_free" and not varlen:
        raise ValueError(
            "`training.batching = padding_free` needs a variable-length attention kernel "
            "(flash-attention on CUDA); without one a packed row attends over its whole length "
            "and trains slower than padding. Use `batching = auto` or `padded`."
        )
    padding_free = training.batching == "padding_free" or (training.batching == "auto" and varlen)
    if padding_free:
        reason = "flash-attention handles variable lengths: rows are packed, no padding computed"
    elif training.batching == "padded":
        reason = "configured `batching = padded`"
    elif cuda:
        reason = "no flash-attention installed: SDPA cannot skip across packed sequences"
    else:
        reason = (
            "CPU SDPA has no variable-length kernel: a packed row would attend over its whole "
            "length, so padded batches of similar length waste less"
        )
    return HardwarePlan(
        device="cuda" if cuda else "cpu",
        # CPUs here have no native bf16: emulated bf16 trains many times slower (docs/design.md).
        bf16=cuda and bf16_supported,
        # Checkpointing trades compute for memory; a 135M model fits without it, and on CPU it
        # only makes each step slower.
        gradient_checkpointing=cuda and training.method == "full",
        padding_free=padding_free,
        attn_implementation="flash_attention_2" if padding_free else "sdpa",
        reason=reason,
    )


def detect_hardware(training: TrainingSettings) -> HardwarePlan:
    import torch

    cuda = torch.cuda.is_available()
    return plan_hardware(
        training,
        cuda=cuda,
        bf16_supported=cuda and torch.cuda.is_bf16_supported(),
        flash_attention=importlib.util.find_spec("flash_attn") is not None,
    )


def launched_processes() -> int:
    """Training processes started by `accelerate launch` / torchrun (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def plan_steps(training: TrainingSettings, examples: int, processes: int = 1) -> int:
    """Optimizer steps from the user's budget: epochs over the window, capped by `max_steps`.
    Each step takes `batch_size` examples in every process."""
    per_epoch = math.ceil(examples / (training.batch_size * processes))
    from_epochs = math.ceil(per_epoch * training.epochs) if training.epochs else None
    candidates = [s for s in (from_epochs, training.max_steps) if s is not None]
    return max(1, min(candidates)) if candidates else per_epoch


def count_examples_seen(steps: int, batch_size: int, examples: int) -> int:
    """Examples drawn in `steps` steps; an epoch's last batch may be short."""
    per_epoch = math.ceil(examples / batch_size)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * examples + min(rest * batch_size, examples)


def to_prompt_completion(example: dict[str, Any]) -> dict[str, Any]:
    """Chat example → TRL's conversational prompt/completion form (loss on the completion)."""
    messages = example["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def count_truncated(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> int:
    """Examples longer than `max_length` tokens once the chat template is applied."""
    lengths = tokenizer.apply_chat_template(
        [e["messages"] for e in examples], tokenize=True, return_dict=False
    )
    return sum(len(ids) > max_length for ids in lengths)


def lora_config(training: TrainingSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=training.lora_r,
        lora_alpha=training.lora_alpha,
        target_modules=training.lora_target_modules,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )


def sft_config(
    training: TrainingSettings,
    output_dir: Path,
    plan: HardwarePlan,
    steps: int,
    validate: bool,
):
    """TRL's SFTConfig with this product's budget and hardware plan; the rest is TRL's default."""
    from trl import SFTConfig

    evaluation: dict[str, Any] = {"save_strategy": "no"}
    every = training.worker.checkpoint_steps
    if every and validate and every % training.eval_steps:
        raise ValueError(
            f"`training.worker.checkpoint_steps` ({every}) must be a multiple of "
            f"`training.eval_steps` ({training.eval_steps}) so the best adapter is among the "
            "saved checkpoints; change one of them"
        )
    if validate:
        # Evaluate and save the adapter at the same interval, so the best one can be kept.
        evaluation = {
            "eval_strategy": "steps",
            "eval_steps": training.eval_steps,
            "save_strategy": "steps",
            "save_steps": training.eval_steps,
            "save_total_limit": 1,
            "save_only_model": True,  # no optimizer/RNG pickles in the checkpoints
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
            "greater_is_better": False,
            "per_device_eval_batch_size": training.batch_size,
        }
    if every:
        evaluation |= {"save_strategy": "steps", "save_steps": every}
    if training.worker.checkpoints:
        # Resumable checkpoints (tasks/train/checkpoints.py): optimizer, scheduler and RNG state
        # too.
        evaluation["save_only_model"] = False
    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        max_length=training.max_length,
        seed=training.seed,
        bf16=plan.bf16,
        # `activation_checkpointing` is the current name: TRL's SFTConfig still sets the
        # deprecated `gradient_checkpointing=True`, which warns unless the new name is given.
        activation_checkpointing=plan.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        # Pinned memory only helps host→GPU copies; on CPU it warns and does nothing.
        dataloader_pin_memory=plan.device == "cuda",
        # on CPU, processes started by a launcher form a gloo group (DDP) instead of each
        # training alone on the whole window
        use_cpu=plan.device == "cpu",
        packing=plan.padding_free,
        padding_free=plan.padding_free,
        # Batches of similar length: the padded batch's cost is its longest row.
        train_sampling_strategy="random" if plan.padding_free else "group_by_length",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        **evaluation,
    )


def completion_loss_trainer_class():
    """SFTTrainer whose loss projects only the assistant positions through the LM head.

    On CPU, TRL scores every position against the whole 49k vocabulary and computes entropy and
    top-1 metrics there too; the prompt and padding positions carry no loss, so this skips them.
    The loss is the same token-mean cross-entropy (tests check it against TRL's).
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    from tasks.evaluate.scoring import answer_positions
    from tasks.train.batching import LengthGroupedBatches

    class CompletionLossTrainer(SFTTrainer):
        tokens_seen = 0  # non-padding tokens of the training batches

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedBatches(lengths, per_step)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            predicts_answer, targets = answer_positions(inputs["labels"])
            features = {k: v for k, v in inputs.items() if k not in ("labels", "completion_mask")}
            # through the model's own forward: DDP/FSDP wrappers sync gradients there
            logits = model(**features, use_cache=False, logits_to_keep=predicts_answer).logits
            loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
            count = targets.numel() if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / torch.as_tensor(count).clamp(min=1)
            if model.training:
                attention = inputs.get("attention_mask")
                real = attention.sum() if attention is not None else inputs["input_ids"].numel()
                self.tokens_seen += int(real)
            return (loss, None) if return_outputs else loss

    return CompletionLossTrainer


def load_base(base_dir: Path, plan: HardwarePlan):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=torch.bfloat16 if plan.bf16 else torch.float32,
        use_safetensors=True,  # never pickled weights; never remote code
        attn_implementation=plan.attn_implementation,
    )
    return model, tokenizer


def continue_adapter(model: Any, adapter_dir: str) -> Any:
    """The champion's LoRA adapter on the base model, trainable (`training.init = champion`)."""
    from peft import LoraConfig, PeftModel

    from tasks.train.fused_lora import with_fused_linear

    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise ValueError(
            f"`training.init = champion` continues a LoRA adapter, but the champion in "
            f"{adapter_dir} holds whole weights (trained with method full/freeze): "
            "set `init = base` for this run"
        )
    config = with_fused_linear(LoraConfig.from_pretrained(adapter_dir))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_CHECKPOINTING_WARNING, FutureWarning)
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True, config=config)


def prepare_model(model: Any, training: TrainingSettings, init_adapter_dir: str | None):
    """LoRA (fresh or the champion's), or the full / top-N-block model; returns (model, peft)."""
    if training.method == "lora":
        from tasks.train.fused_lora import with_fused_linear

        if init_adapter_dir:
            return continue_adapter(model, init_adapter_dir), None
        return model, with_fused_linear(lora_config(training))
    if training.method == "freeze":
        blocks = model.model.layers
        model.requires_grad_(False)
        for module in [*blocks[-training.freeze_top_n :], model.model.norm]:
            module.requires_grad_(True)
        # SmolLM2 ties the head to the input embeddings: training the head trains both.
        model.get_output_embeddings().requires_grad_(True)
    if getattr(model.config, "tie_word_embeddings", False):
        # A tied head is saved once, as the embeddings. Trainer's load of the best checkpoint
        # re-ties keys listed here and warns "missing lm_head.weight" about any other.
        model._keys_to_ignore_on_save = list(getattr(model, "_tied_weights_keys", None) or [])
    return model, None


def build_trainer(
    training: TrainingSettings,
    plan: HardwarePlan,
    model: Any,
    tokenizer: Any,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    output_dir: Path,
    steps: int,
    peft_config: Any = None,
):
    """Our trainer, as the flow and the throughput bench both build it."""
    from datasets import Dataset
    from transformers import PrinterCallback

    train_set = Dataset.from_list([to_prompt_completion(e) for e in train_rows])
    eval_set = None
    if eval_rows:
        eval_set = Dataset.from_list([to_prompt_completion(e) for e in eval_rows])
    model.config.use_cache = False  # no KV cache while training
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_CHECKPOINTING_WARNING, FutureWarning)
        trainer = completion_loss_trainer_class()(
            model=model,
            args=sft_config(training, output_dir, plan, steps, validate=eval_set is not None),
            train_dataset=train_set.shuffle(seed=training.seed),
            eval_dataset=eval_set,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    # Trainer prints its log dicts to stdout; the run log gets compact lines instead.
    trainer.remove_callback(PrinterCallback)
    return trainer


def save_outputs(trainer: Any, tokenizer: Any, out_dir: Path, merge: bool) -> Path | None:
    """Safetensors and tokenizer only: `trainer.save_model` would add a pickled
    training_args.bin, so the model saves itself and the arguments go to the card as JSON."""
    model = trainer.model
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if merge and hasattr(model, "merge_and_unload"):
        merged_dir = out_dir.parent / "merged"
        model.merge_and_unload().save_pretrained(merged_dir, safe_serialization=True)
        tokenizer.save_pretrained(merged_dir)
        return merged_dir
    return None


def _stopped_by(trainer: Any, steps: int, budget_hit: bool) -> str:
    if budget_hit:
        return "max_minutes"
    if trainer.state.global_step < steps:
        return "early_stopping"
    return "steps"


@task
def train_local(
    settings: Settings,
    dataset: DatasetRef,
    run_id: str,
    window: TrainingWindow | None = None,
    init_adapter_dir: str | None = None,
    checkpoint_prefix: str | None = None,
) -> TrainResult:
    """Fine-tune on the training window (default: the dataset's own train split); save the
    adapter under the cache dir. `init_adapter_dir` continues that LoRA adapter
    (`training.init = champion`). With `checkpoint_prefix` (an S3 prefix,
    tasks/train/checkpoints.py)
    checkpoints are synced there and training resumes from the newest complete one.

    No retries: a failed fine-tune is investigated, not blindly repeated.
    """
    import torch
    from transformers import EarlyStoppingCallback, set_seed

    training = settings.training
    started = time.perf_counter()
    log = run_logger(__name__)
    set_seed(training.seed)

    # setup: device, precision, batching
    plan = detect_hardware(training)
    log.info("batching: %s (%s)", plan.batching, plan.reason)
    base_dir = resolve_base_model(training.base_model, settings.cache_dir, settings.s3)
    run_dir = settings.cache_dir / "runs" / run_id
    output_dir = run_dir / "challenger"

    # data: the window, its truncation report, the budget in steps
    window = window or single_version_window(dataset)
    train_rows, eval_rows = load_window_examples(settings, window)
    if not train_rows:
        raise ValueError(
            f"dataset {dataset.version} has no training examples; lower `quality.min_records` "
            "only if that is really intended, or wait for more logs"
        )
    train_rows = in_content_order(train_rows)
    eval_rows = eval_rows[: training.max_eval_examples]
    processes = launched_processes()
    steps = plan_steps(training, len(train_rows), processes)

    # model: base weights from safetensors only
    model, tokenizer = load_base(base_dir, plan)
    truncated = count_truncated(tokenizer, train_rows, training.max_length)
    log.info(
        "window: %d examples from %d dataset version(s), %d validation; %d steps of %d x %d "
        "process(es); %d examples longer than max_length %d are truncated",
        len(train_rows),
        len(window.versions),
        len(eval_rows),
        steps,
        training.batch_size,
        processes,
        truncated,
        training.max_length,
    )
    model, peft_config = prepare_model(model, training, init_adapter_dir)

    # trainer: validation at an interval, early stopping, progress in the Prefect UI
    trainer = build_trainer(
        training,
        plan,
        model,
        tokenizer,
        train_rows,
        eval_rows,
        run_dir / "checkpoints",
        steps,
        peft_config,
    )
    train_log = TrainLog(planned_steps=steps, max_minutes=training.max_minutes)
    trainer.add_callback(progress_callback(train_log))
    if eval_rows and training.early_stopping_patience:
        trainer.add_callback(EarlyStoppingCallback(training.early_stopping_patience))
    resume_from = None
    if checkpoint_prefix:
        if training.worker.checkpoint_minutes:
            trainer.add_callback(save_every_minutes(training.worker.checkpoint_minutes))
        trainer.add_callback(s3_sync_callback(settings, checkpoint_prefix))
        resume_from = download_latest(settings, checkpoint_prefix, run_dir / "resume")
        if resume_from:
            log.info("resuming from %s (synced from S3)", resume_from.name)
    train_started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - train_started

    # save: safetensors, tokenizer, HF model card; arguments as JSON, never pickled
    # under `accelerate launch` every process gets here; one writes (tasks/train/handoff.py uploads)
    main = trainer.is_world_process_zero()
    merged_dir = None
    if main:
        merged_dir = save_outputs(trainer, tokenizer, output_dir, training.merge_adapter)
    args = json.loads(trainer.args.to_json_string())
    steps_done = trainer.state.global_step
    per_step = training.batch_size * processes
    examples_seen = count_examples_seen(steps_done, per_step, len(train_rows))
    tokens_seen = trainer.tokens_seen
    if processes > 1:  # every process counted its own batches
        tokens_seen = int(trainer.accelerator.reduce(torch.tensor(tokens_seen), "sum"))
    train_loss = output.training_loss
    result = TrainResult(
        adapter_dir=str(output_dir),
        base_model=training.base_model,
        base_model_dir=str(base_dir),
        method=training.method,
        merged_dir=str(merged_dir) if merged_dir else None,
        steps=trainer.state.global_step,
        planned_steps=steps,
        train_examples=len(train_rows),
        examples_seen=examples_seen,
        fraction_seen=round(examples_seen / len(train_rows), 4),
        tokens_seen=tokens_seen,
        processes=trainer.args.world_size,
        tokens_per_second=round(tokens_seen / train_seconds, 1),
        truncated_examples=truncated,
        train_loss=float(train_loss) if math.isfinite(train_loss) else -1.0,
        best_val_loss=trainer.state.best_metric,
        val_curve=train_log.val_curve,
        loss_curve=train_log.losses,
        stopped_by=_stopped_by(trainer, steps, train_log.budget_hit),
        seconds=round(time.perf_counter() - started, 1),
        device=plan.device,
        precision="bf16" if plan.bf16 else str(torch.get_default_dtype()).removeprefix("torch."),
        batching=plan.batching,
        batching_reason=plan.reason,
        dataset_versions=[v.version for v in window.versions],
        init="champion" if init_adapter_dir else "base",
        resumed_from_step=int(resume_from.name.split("-")[-1]) if resume_from else None,
        training_args={k: args[k] for k in sorted(args) if not k.startswith("_")},
    )
    if main:
        (output_dir / "README.md").write_text(hf_model_card(result, settings, window))
    return result
