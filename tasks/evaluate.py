"""Evaluate: score a model on a held-out chat set, overall and per slice.

The primary metric is the mean negative log-likelihood of the agent's answer tokens given the
conversation so far (`loss`, lower is better; `perplexity` = exp(loss)); `token_accuracy` is the
share of answer tokens the model ranks first. Both are computed with teacher forcing, so they
are cheap enough to run on every candidate on a CPU, and they compare models that share a
tokenizer exactly. Slices are per `category`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import Settings
from tasks.s3 import get_jsonl, s3_client

IGNORE = -100  # label value that cross-entropy skips: prompt and padding positions
GOLDEN = "golden"  # the frozen set the promotion decision rests on
RECENT = "recent"  # this run's held-out conversations: a guardrail against drift


class ModelRef(BaseModel):
    """A model that can be loaded locally: base weights, plus a LoRA adapter if fine-tuned."""

    label: str
    base_model_dir: str
    adapter_dir: str | None = None
    version: str | None = None  # registry version, None for the untouched base model


class SliceMetrics(BaseModel):
    examples: int
    tokens: int
    loss: float
    perplexity: float
    token_accuracy: float


class EvalReport(BaseModel):
    model: str
    dataset: str
    overall: SliceMetrics
    slices: dict[str, SliceMetrics]

    def by_slice(self) -> dict[str, SliceMetrics]:
        """ "overall" first, then each category."""
        return {"overall": self.overall, **self.slices}


class Comparison(BaseModel):
    """Challenger and incumbent scored on the same held-out set."""

    challenger: EvalReport
    incumbent: EvalReport


def compare(
    challenger: dict[str, EvalReport], incumbent: dict[str, EvalReport]
) -> dict[str, Comparison]:
    """Pair the two models' reports per eval set; a set only one of them was scored on is
    dropped (an empty set is skipped by score_model for both)."""
    return {
        name: Comparison(challenger=report, incumbent=incumbent[name])
        for name, report in challenger.items()
        if name in incumbent
    }


def load_model(ref: ModelRef):
    """Base weights from safetensors, with the adapter merged in for fast inference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.adapter_dir or ref.base_model_dir)
    # `training.method = full | freeze` saves whole weights where a LoRA run saves an adapter
    lora = ref.adapter_dir is not None and (Path(ref.adapter_dir) / "adapter_config.json").exists()
    weights_dir = ref.base_model_dir if lora or not ref.adapter_dir else ref.adapter_dir
    model = AutoModelForCausalLM.from_pretrained(
        weights_dir, dtype=torch.float32, use_safetensors=True
    )
    if lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref.adapter_dir).merge_and_unload()
    return model.eval(), tokenizer


def encode_example(tokenizer: Any, messages: list[dict[str, str]], max_length: int):
    """Token ids for the whole conversation and labels that keep only the last answer."""
    prompt_ids = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full_ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    labels = [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return full_ids[:max_length], labels[:max_length]


def _metrics(nll: float, correct: int, tokens: int, examples: int) -> SliceMetrics:
    loss = nll / max(tokens, 1)
    return SliceMetrics(
        examples=examples,
        tokens=tokens,
        loss=round(loss, 5),
        perplexity=round(math.exp(min(loss, 50.0)), 4),
        token_accuracy=round(correct / max(tokens, 1), 5),
    )


def score_examples(
    model: Any, tokenizer: Any, examples: list[dict[str, Any]], batch_size: int, max_length: int
) -> tuple[SliceMetrics, dict[str, SliceMetrics]]:
    """Teacher-forced answer loss and token accuracy, overall and per category."""
    import torch
    import torch.nn.functional as F

    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])  # nll, correct, tokens, n
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        encoded = [encode_example(tokenizer, e["messages"], max_length) for e in batch]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in encoded])
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in encoded])
        lengths = torch.tensor([len(ids) for ids, _ in encoded])
        attention = torch.arange(width) < lengths.unsqueeze(1)
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=attention.long()).logits.float()
        # position t predicts token t+1
        logits, targets = logits[:, :-1], labels[:, 1:]
        mask = targets != IGNORE
        nll = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
        correct = (logits.argmax(-1) == targets) & mask
        for row, example in enumerate(batch):
            category = (example.get("metadata") or {}).get("category") or "unknown"
            for key in ("__overall__", category):
                totals[key][0] += float((nll[row] * mask[row]).sum())
                totals[key][1] += int(correct[row].sum())
                totals[key][2] += int(mask[row].sum())
                totals[key][3] += 1
    overall = _metrics(*totals.pop("__overall__", [0.0, 0, 0, 0]))
    return overall, {k: _metrics(*v) for k, v in sorted(totals.items())}


@task
def score_model(
    settings: Settings, ref: ModelRef, eval_sets: dict[str, str]
) -> dict[str, EvalReport]:
    """Score one model on each named held-out set in S3 (golden, recent), loading it once.

    An empty set is skipped: a small batch may leave no recent held-out examples.
    """
    client = s3_client(settings.s3)
    model, tokenizer = load_model(ref)
    reports = {}
    for name, key in eval_sets.items():
        examples = get_jsonl(client, settings.s3.bucket, key)
        if not examples:
            continue
        overall, slices = score_examples(
            model,
            tokenizer,
            examples,
            batch_size=settings.evaluation.batch_size,
            max_length=settings.training.max_length,
        )
        reports[name] = EvalReport(model=ref.label, dataset=name, overall=overall, slices=slices)
    return reports
