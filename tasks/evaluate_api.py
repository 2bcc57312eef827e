"""Evaluate a hosted model: replies generated through chat completions, scored against the
agent's real answers.

The API gives no token log-probabilities for a teacher-forced loss, so for API models the
promotion decision rests on ROUGE-L F1 of the generated reply against the reference agent
turn. It travels in the shared report shape as `loss = 1 - ROUGE-L F1` (lower is better, so
`decide()` applies unchanged) and `token_accuracy = ROUGE-L F1`; `perplexity` is NaN (not
measurable).

Scoring goes through per-example rows (`HostedExampleScore`: `id` = the example's
`metadata.conversation_id`, else its position; `category`; `rouge_l`), aggregated afterwards,
and replies come from `hosted_replies(settings, model_id)`, a plain callable
`list[chat prompt] -> list[reply]`. That callable is the "reply generator" the shared
per-example scorer (tasks/scoring.py, `score_examples(scorer, examples)`) accepts, so richer
generation metrics plug in by handing it over; its rows join these on `id`.

Calls run with a concurrency limit; the SDK retries 429 and 5xx answers with backoff; the
estimated cost of the whole evaluation is checked against `training.api.eval_budget_usd`
before the first call, and the prompts pass the same PII check as the training files.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.api_guards import require_no_pii
from tasks.config import Settings
from tasks.evaluate import Comparison, EvalReport, ModelRef, SliceMetrics, compare
from tasks.registry import CHAMPION, Champion, model_prefix
from tasks.s3 import get_json, get_jsonl, s3_client
from tasks.tiktoken_files import encoding_for_model
from tasks.train_api import api_client


class EvalBudgetExceeded(RuntimeError):
    pass


def estimated_cost(settings: Settings, model_id: str, prompts: list[list[dict[str, str]]]) -> float:
    """Upper bound: every prompt token plus a full-length reply per prompt."""
    api = settings.training.api
    encoding = encoding_for_model(model_id.removeprefix("ft:").split(":")[0])
    prompt_tokens = sum(len(encoding.encode(m["content"])) + 4 for p in prompts for m in p)
    tokens = prompt_tokens + api.eval_max_tokens * len(prompts)
    return tokens * api.eval_price_per_million_tokens / 1_000_000


Messages = list[dict[str, str]]


def hosted_replies(settings: Settings, model_id: str) -> Callable[[list[Messages]], list[str]]:
    """A reply generator for a hosted model: one reply per chat prompt, in order. Checks the
    evaluation cost cap before the first call; runs `eval_concurrency` calls at a time; the
    SDK retries 429 and 5xx answers with backoff (`max_retries`)."""
    api = settings.training.api

    def generate(chat_prompts: list[Messages]) -> list[str]:
        prompts = [[{"role": m["role"], "content": m["content"]} for m in p] for p in chat_prompts]
        cost = estimated_cost(settings, model_id, prompts)
        if cost > api.eval_budget_usd:
            raise EvalBudgetExceeded(
                f"evaluating {model_id} on {len(prompts)} prompts may cost ${cost:.2f}, over "
                f"`training.api.eval_budget_usd` = ${api.eval_budget_usd:.2f}: raise it, lower "
                "`training.api.eval_max_tokens`, or use a smaller golden set"
            )
        client = api_client(api)

        def reply(messages: Messages) -> str:
            response = client.chat.completions.create(
                model=model_id,
                messages=messages,
                max_completion_tokens=api.eval_max_tokens,
                temperature=0,
                seed=settings.training.seed,
            )
            return response.choices[0].message.content or ""

        with ThreadPoolExecutor(max_workers=api.eval_concurrency) as pool:
            return list(pool.map(reply, prompts))

    return generate


def generate_replies(settings: Settings, model_id: str, chat_prompts: list[Messages]) -> list[str]:
    """One reply per prompt from the hosted model, in order."""
    return hosted_replies(settings, model_id)(chat_prompts)


class HostedExampleScore(BaseModel):
    """One held-out example scored on a hosted model's reply (no reply text: it may quote
    the customer, and rows end up in reports)."""

    id: str
    category: str
    rouge_l: float
    reply_words: int


def score_examples(examples: list[dict[str, Any]], replies: list[str]) -> list[HostedExampleScore]:
    """ROUGE-L F1 of each reply against the example's reference answer, input order."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = []
    for position, (example, reply) in enumerate(zip(examples, replies, strict=True)):
        meta = example.get("metadata") or {}
        reference = example["messages"][-1]["content"]
        rows.append(
            HostedExampleScore(
                id=str(meta.get("conversation_id") or position),
                category=meta.get("category") or "unknown",
                rouge_l=scorer.score(reference, reply)["rougeL"].fmeasure,
                reply_words=len(reply.split()),
            )
        )
    return rows


def aggregate(rows: list[HostedExampleScore]) -> tuple[SliceMetrics, dict[str, SliceMetrics]]:
    """Overall and per-category metrics in the shared report shape (loss = 1 - ROUGE-L)."""

    def metrics(group: list[HostedExampleScore]) -> SliceMetrics:
        rouge_l = sum(r.rouge_l for r in group) / max(len(group), 1)
        return SliceMetrics(
            examples=len(group),
            tokens=sum(r.reply_words for r in group),
            loss=round(1 - rouge_l, 5),
            perplexity=math.nan,
            token_accuracy=round(rouge_l, 5),
        )

    by_category: dict[str, list[HostedExampleScore]] = defaultdict(list)
    for row in rows:
        by_category[row.category].append(row)
    return metrics(rows), {k: metrics(v) for k, v in sorted(by_category.items())}


def score_generations(
    examples: list[dict[str, Any]], replies: list[str]
) -> tuple[SliceMetrics, dict[str, SliceMetrics]]:
    """ROUGE-L F1 of each reply against the reference answer, overall and per category."""
    return aggregate(score_examples(examples, replies))


@task
def score_api_model(
    settings: Settings, label: str, model_id: str, eval_sets: dict[str, str]
) -> dict[str, EvalReport]:
    """Score a hosted model on each named held-out set in S3; empty sets are skipped."""
    client = s3_client(settings.s3)
    reports = {}
    for name, key in eval_sets.items():
        examples = get_jsonl(client, settings.s3.bucket, key)
        if not examples:
            continue
        # prompts leave the machine too: the same pre-upload PII check as the training files
        require_no_pii([{"messages": e["messages"][:-1]} for e in examples], f"{name} set")
        replies = hosted_replies(settings, model_id)([e["messages"][:-1] for e in examples])
        overall, slices = aggregate(score_examples(examples, replies))
        reports[name] = EvalReport(
            model=f"{label} (ROUGE-L)", dataset=name, overall=overall, slices=slices
        )
    return reports


@task(retries=2, retry_delay_seconds=5)
def api_champion(settings: Settings) -> tuple[Champion, str]:
    """The incumbent for an API run and its hosted model id: the champion version's
    fine-tuned model, or the provider's base model when the champion is not a hosted one."""
    s3, api = settings.s3, settings.training.api
    client = s3_client(s3)
    alias = get_json(client, s3.bucket, f"{model_prefix(settings)}aliases/{CHAMPION}.json")
    version = alias.body["version"] if alias.body else None
    record = None
    if version:
        record = get_json(
            client, s3.bucket, f"{model_prefix(settings)}versions/{version}/api.json"
        ).body
    if record:
        label, model_id = f"champion {version}", record["fine_tuned_model"]
    else:
        label, model_id = f"base ({api.model})", api.model
    ref = ModelRef(label=label, base_model_dir=model_id, version=version)
    return Champion(model=ref, alias_etag=alias.etag), model_id


def evaluate_hosted(
    settings: Settings, trained: Any, eval_sets: dict[str, str]
) -> tuple[Champion, dict[str, Comparison]]:
    """The hosted challenger against the incumbent (hosted champion, else the base model)."""
    champion, incumbent_id = api_champion(settings)
    comparisons = compare(
        score_api_model(settings, "challenger", trained.fine_tuned_model, eval_sets),
        score_api_model(settings, champion.model.label, incumbent_id, eval_sets),
    )
    return champion, comparisons
