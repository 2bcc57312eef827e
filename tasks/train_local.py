"""Local fine-tuning backend: LoRA on the base model with TRL's SFTTrainer, GPU or CPU.

Each chat example becomes a prompt/completion pair (everything up to the last agent turn →
that turn), so the loss is computed on assistant tokens only. TRL and PEFT keep their defaults
except where this file says why.

    RETRAIN_TRAINING__MAX_STEPS=5 retrain run     # a short run against the configured bucket
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.exceptions import MissingContextError
from pydantic import BaseModel

from tasks.base_model import resolve_base_model
from tasks.config import Settings, TrainingSettings
from tasks.dataset import DatasetRef
from tasks.s3 import get_jsonl, s3_client


class TrainResult(BaseModel):
    adapter_dir: str
    base_model: str
    base_model_dir: str
    steps: int
    train_examples: int
    train_loss: float
    loss_curve: list[float]
    seconds: float
    device: str


def to_prompt_completion(example: dict[str, Any]) -> dict[str, Any]:
    """Chat example → TRL's conversational prompt/completion form (loss on the completion)."""
    messages = example["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def lora_config(training: TrainingSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=training.lora_r,
        lora_alpha=training.lora_alpha,
        target_modules=training.lora_target_modules,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )


def sft_config(training: TrainingSettings, output_dir: Path, on_gpu: bool, bf16: bool):
    """TRL's SFTConfig with this product's budget; everything else stays TRL's default."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=training.max_steps,
        per_device_train_batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        max_length=training.max_length,
        seed=training.seed,
        # CPUs here have no native bf16 and gradient checkpointing only trades speed for memory
        # a 135M model does not need: both TRL defaults make CPU training many times slower.
        bf16=bf16,
        gradient_checkpointing=on_gpu,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run; a plain logger when called as `task.fn()`."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def prefect_log_callback():
    """A TrainerCallback that writes each logging step to the Prefect run log."""
    from transformers import TrainerCallback

    class PrefectLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            step = {k: round(v, 4) if isinstance(v, float) else v for k, v in (logs or {}).items()}
            _logger().info("step %s: %s", state.global_step, step)

    return PrefectLog()


def load_chat_examples(settings: Settings, key: str) -> list[dict[str, Any]]:
    client = s3_client(settings.s3)
    return get_jsonl(client, settings.s3.bucket, key)


@task
def train_local(settings: Settings, dataset: DatasetRef, run_id: str) -> TrainResult:
    """Fine-tune a LoRA adapter on the dataset's train split; save it under the cache dir.

    No retries: a failed fine-tune is investigated, not blindly repeated.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTTrainer

    training = settings.training
    started = time.perf_counter()

    # setup: device and precision
    on_gpu = torch.cuda.is_available()
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    base_dir = resolve_base_model(training.base_model, settings.cache_dir)
    output_dir = settings.cache_dir / "runs" / run_id / "challenger"

    # data
    train_rows = [to_prompt_completion(e) for e in load_chat_examples(settings, dataset.train_key)]
    if not train_rows:
        raise ValueError(
            f"dataset {dataset.version} has no training examples; lower `quality.min_records` "
            "only if that is really intended, or wait for more logs"
        )
    train_set = Dataset.from_list(train_rows).shuffle(seed=training.seed)

    # model: base weights from safetensors only, never remote code
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.bfloat16 if bf16 else torch.float32, use_safetensors=True
    )

    trainer = SFTTrainer(
        model=model,
        args=sft_config(training, output_dir, on_gpu=on_gpu, bf16=bf16),
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=lora_config(training),
    )
    # Trainer prints its log dicts to stdout; send them to the Prefect run log instead.
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(prefect_log_callback())
    output = trainer.train()
    trainer.save_model(str(output_dir))  # the LoRA adapter only (a few MB)
    tokenizer.save_pretrained(output_dir)

    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return TrainResult(
        adapter_dir=str(output_dir),
        base_model=training.base_model,
        base_model_dir=str(base_dir),
        steps=output.global_step,
        train_examples=len(train_rows),
        train_loss=float(output.training_loss) if math.isfinite(output.training_loss) else -1.0,
        loss_curve=losses,
        seconds=round(time.perf_counter() - started, 1),
        device="cuda" if on_gpu else "cpu",
    )
