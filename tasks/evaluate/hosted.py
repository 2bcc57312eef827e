"""Evaluate a hosted model: replies generated through chat completions, scored by the shared
per-example scorer (tasks/evaluate/scoring.py) against the agent's real answers.

The API gives no token log-probabilities for a teacher-forced loss, so API models are scored on
generated replies only (ROUGE-L, MiniLM similarity, new-PII and offensive rates) and the gate
(tasks/promote/policy.py) decides on similarity. Replies come from `hosted_replies(settings,
model_id)`,
a plain `list[chat prompt] -> list[reply]` callable, the "reply generator" `score_examples`
accepts.

Calls run with a concurrency limit; the SDK retries 429 and 5xx answers with backoff; the
estimated cost of the whole evaluation is checked against `training.api.eval_budget_usd`
before the first call, and the prompts pass the same PII check as the training files.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import task

from tasks.config import Settings
from tasks.evaluate.aggregate import Comparison, EvalReport, ModelRef, compare, score_model
from tasks.promote.registry import (
    CHAMPION,
    Champion,
    alias_version,
    read_alias,
    version_key,
)
from tasks.storage.s3 import get_json, get_jsonl, s3_client
from tasks.train.api.guards import require_no_pii
from tasks.train.api.jobs import api_client
from tasks.train.api.tokens import encoding_for_model


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


def score_api_model(
    settings: Settings, ref: ModelRef, eval_sets: dict[str, str]
) -> dict[str, EvalReport]:
    """Score a hosted model with the shared scorer (generated replies: ROUGE-L, similarity,
    safety), after the prompts of every set passed the pre-upload PII check: they leave the
    machine too."""
    client = s3_client(settings.s3)
    for name, key in eval_sets.items():
        examples = get_jsonl(client, settings.s3.bucket, key)
        prompts = [{"messages": e["messages"][:-1]} for e in examples]
        require_no_pii(prompts, f"{name} set", settings.pii.allow_list)
    return score_model(settings, ref, eval_sets, hosted_replies(settings, ref.api_model or ""))


@task(retries=2, retry_delay_seconds=5)
def api_champion(settings: Settings) -> tuple[Champion, str]:
    """The incumbent for an API run and its hosted model id: the champion version's
    fine-tuned model, or the provider's base model when the champion is not a hosted one."""
    s3, api = settings.s3, settings.training.api
    client = s3_client(s3)
    alias = read_alias(client, settings, CHAMPION)
    version = alias_version(alias)
    record = None
    if version:
        record = get_json(client, s3.bucket, version_key(settings, version, "api.json")).body
    if record:
        label, model_id = f"champion {version}", record["fine_tuned_model"]
    else:
        label, model_id = f"base ({api.model})", api.model
    ref = ModelRef(
        label=label, version=version, kind="api", api_model=model_id, base_model=api.model
    )
    return Champion(model=ref, alias_etag=alias.etag), model_id


def evaluate_hosted(
    settings: Settings, trained: Any, eval_sets: dict[str, str]
) -> tuple[Champion, dict[str, Comparison]]:
    """The hosted challenger against the incumbent (hosted champion, else the base model)."""
    champion, _ = api_champion(settings)
    challenger = ModelRef(
        label="challenger",
        kind="api",
        api_model=trained.fine_tuned_model,
        base_model=settings.training.api.model,
    )
    comparisons = compare(
        score_api_model(settings, challenger, eval_sets),
        score_api_model(settings, champion.model, eval_sets),
    )
    return champion, comparisons
