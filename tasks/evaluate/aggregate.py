"""Evaluate: score a model on held-out chat sets, overall and per slice (category, intent, segment).

Per-example scoring lives in tasks/evaluate/scoring.py (`score_examples`); this module loads models,
reads the held-out sets from S3 and aggregates the rows into reports. Metrics:

- local models (same tokenizer as training): teacher-forced answer `loss` (mean NLL per answer
  token; lower is better), `perplexity` = exp(loss), `token_accuracy`;
- every model, on greedy generated replies: `rouge_l`, `similarity` (MiniLM cosine),
  `new_pii_rate`, `offensive_rate`; for task type `classify`, `accuracy` and `macro_f1`.

The per-example rows stay in the report, so the promotion gate can pair them by example id.

    python -c "from tasks.evaluate.aggregate import score_model; help(score_model)"
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from prefect import task
from pydantic import BaseModel, Field

from tasks.config import Settings
from tasks.evaluate.scoring import (
    IGNORE,
    ExampleScore,
    LocalModel,
    ReplyGenerator,
    encode_example,
    judges,
    perplexity,
    redact,
    score_examples,
)
from tasks.storage.s3 import get_jsonl, s3_client

__all__ = ["IGNORE", "encode_example", "score_examples"]

GOLDEN = "golden"  # the frozen set the promotion decision rests on
RECENT = "recent"  # this run's held-out conversations: a guardrail against drift
SLICE_FIELDS = ("category", "intent", "segment")


class ModelRef(BaseModel):
    """A model to score: local base weights (+ LoRA adapter), or a hosted API model."""

    label: str
    base_model_dir: str = ""
    adapter_dir: str | None = None
    version: str | None = None  # registry version, None for the untouched base model
    base_model: str | None = None  # the `training.base_model` it was tuned from
    kind: Literal["local", "api"] = "local"
    api_model: str | None = None  # kind "api": the provider's model id


class SliceMetrics(BaseModel):
    """Means over a slice's examples; a metric its scorer cannot give is None."""

    examples: int
    tokens: int = 0
    loss: float | None = None
    perplexity: float | None = None
    token_accuracy: float | None = None
    rouge_l: float | None = None
    similarity: float | None = None
    new_pii_rate: float | None = None
    offensive_rate: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None


class EvalReport(BaseModel):
    model: str
    dataset: str
    overall: SliceMetrics
    slices: dict[str, SliceMetrics] = Field(
        default_factory=dict, description="`category:X`, `intent:Y`, `segment:Z` → metrics"
    )
    kind: Literal["local", "api"] = "local"
    base_model: str | None = None
    examples: list[ExampleScore] = Field(default_factory=list)
    sample: list[dict[str, str]] = Field(
        default_factory=list, description="a few redacted conversations with the model's reply"
    )

    def by_slice(self) -> dict[str, SliceMetrics]:
        """ "overall" first, then each slice."""
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


def load_model(ref: ModelRef) -> LocalModel:
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

        from tasks.train.local import PEFT_CHECKPOINTING_WARNING

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", PEFT_CHECKPOINTING_WARNING, FutureWarning)
            model = PeftModel.from_pretrained(model, ref.adapter_dir).merge_and_unload()
    return LocalModel(model=model.eval(), tokenizer=tokenizer)


def slice_names(row: ExampleScore) -> list[str]:
    return [
        f"category:{row.category}",
        f"intent:{row.intent}",
        *(f"segment:{s}" for s in row.segments),
    ]


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 5) if present else None


def aggregate(rows: list[ExampleScore]) -> SliceMetrics:
    """Slice metrics from per-example rows; loss and token accuracy are token-weighted."""
    tokens = sum(r.answer_tokens or 0 for r in rows)
    forced = [r for r in rows if r.nll is not None]
    loss = sum(r.nll for r in forced) / tokens if forced and tokens else None
    macro_f1 = None
    labelled = [r for r in rows if r.label is not None]
    if labelled:
        from sklearn.metrics import f1_score

        macro_f1 = round(
            float(
                f1_score(
                    [r.label for r in labelled],
                    [r.predicted for r in labelled],
                    average="macro",
                    zero_division=0,
                )
            ),
            5,
        )
    return SliceMetrics(
        examples=len(rows),
        tokens=tokens,
        loss=round(loss, 5) if loss is not None else None,
        perplexity=round(perplexity(loss), 4) if loss is not None else None,
        token_accuracy=round(sum(r.correct_tokens for r in forced) / tokens, 5)
        if forced and tokens
        else None,
        rouge_l=_mean(r.rouge_l for r in rows),
        similarity=_mean(r.similarity for r in rows),
        new_pii_rate=_mean(r.new_pii for r in rows),
        offensive_rate=_mean(r.offensive for r in rows),
        accuracy=_mean(r.correct for r in rows),
        macro_f1=macro_f1,
    )


def build_report(
    ref: ModelRef,
    dataset: str,
    rows: list[ExampleScore],
    examples: list[dict[str, Any]],
    sample_size: int,
) -> EvalReport:
    by_slice: dict[str, list[ExampleScore]] = defaultdict(list)
    for row in rows:
        for name in slice_names(row):
            by_slice[name].append(row)
    return EvalReport(
        model=ref.label,
        dataset=dataset,
        overall=aggregate(rows),
        slices={name: aggregate(by_slice[name]) for name in sorted(by_slice)},
        kind=ref.kind,
        base_model=ref.base_model,
        examples=rows,
        sample=redacted_sample(rows, examples, sample_size),
    )


def redacted_sample(
    rows: list[ExampleScore], examples: list[dict[str, Any]], size: int
) -> list[dict[str, str]]:
    """The same few examples for every model (chosen by id), redacted, for a person to read."""
    if size == 0 or not rows:
        return []
    chosen = sorted(range(len(rows)), key=lambda i: rows[i].id)
    chosen = sorted(random.Random(0).sample(chosen, min(size, len(chosen))))
    judge = judges()

    def clean(text: str) -> str:
        return redact(judge, text)

    sample = []
    for i in chosen:
        messages = examples[i]["messages"]
        customer = next((m["content"] for m in reversed(messages[:-1]) if m["role"] == "user"), "")
        sample.append(
            {
                "id": rows[i].id,
                "category": rows[i].category,
                "customer": clean(customer),
                "reference": clean(messages[-1]["content"]),
                "reply": rows[i].reply,
            }
        )
    return sample


@task
def score_model(
    settings: Settings,
    ref: ModelRef,
    eval_sets: dict[str, str],
    generator: ReplyGenerator | None = None,
) -> dict[str, EvalReport]:
    """Score one model on each named held-out set in S3 (golden, recent), loading it once.

    A local model is loaded from `ref`; an API model (`ref.kind == "api"`) is scored through
    `generator` (chat prompts → replies). An empty set is skipped: a small batch may leave no
    recent held-out examples.
    """
    if ref.kind == "api":
        if generator is None:
            raise ValueError(
                f"model {ref.label} is an API model: pass a reply generator (chat prompts → "
                "replies) to score it"
            )
        scorer: LocalModel | ReplyGenerator = generator
    else:
        scorer = load_model(ref)
    client = s3_client(settings.s3)
    reports = {}
    for name, key in eval_sets.items():
        examples = get_jsonl(client, settings.s3.bucket, key)
        if not examples:
            continue
        rows = score_examples(scorer, examples, settings.evaluation)
        reports[name] = build_report(ref, name, rows, examples, settings.evaluation.sample_size)
    return reports
