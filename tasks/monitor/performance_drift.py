"""Performance drift: does the champion still answer recent conversations as well as when it
was promoted?

The agent's actual replies in the recent window are the references. The champion's answer loss
on them (teacher-forced, the metric it was promoted on) gets a bootstrap confidence interval
(scipy.stats.bootstrap over conversations); it drifts only when even the interval's lower end
is worse than the loss recorded in its card at promotion by more than `drift.max_loss_increase`,
so a noisy window does not fire.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.config import Settings
from tasks.evaluate.aggregate import GOLDEN, RECENT, ModelRef, load_model
from tasks.evaluate.scoring import LocalModel, teacher_forced
from tasks.monitor.data_drift import DriftStatistic
from tasks.prepare.dataset import to_chat_example
from tasks.prepare.golden import hash_fraction


def promotion_loss(card: dict[str, Any]) -> tuple[str, float]:
    """The loss the champion had when promoted: on that run's recent held-out set (the same kind
    of data the monitor scores), else on the golden set."""
    evaluation = card.get("evaluation") or {}
    for name in (RECENT, GOLDEN):
        if name in evaluation:
            return name, float(evaluation[name]["challenger"]["overall"]["loss"])
    raise ValueError(
        f"the card of {card.get('name')} {card.get('version')} records no evaluation; "
        "performance drift needs the metrics at promotion"
    )


def per_example_scores(
    local: LocalModel, examples: list[dict[str, Any]], settings: Settings
) -> list[tuple[float, int]]:
    """(summed answer NLL, answer tokens) per example, input order: the teacher-forced half of
    the project's scoring (tasks/evaluate/scoring.py), so the champion is judged exactly as at
    promotion.
    Generation metrics are not needed here and would cost minutes per window on CPU."""
    evaluation = settings.evaluation
    scored = teacher_forced(local, examples, evaluation.batch_size, evaluation.max_length)
    return [(nll, tokens) for nll, _, tokens in scored]


def answer_losses(
    settings: Settings, model: ModelRef, examples: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example answer NLL sums and token counts of the model on the examples."""
    scores = np.array(per_example_scores(load_model(model), examples, settings), dtype=float)
    return scores[:, 0], scores[:, 1]


def recent_examples(settings: Settings, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to `drift.performance_examples` recent conversations as chat examples, chosen by a hash
    of their id so reruns over the same window score the same ones."""
    chosen = sorted(records, key=lambda r: hash_fraction(r["conversation_id"]))
    chosen = chosen[: settings.drift.performance_examples]
    return [to_chat_example(r, settings.dataset.system_prompt) for r in chosen]


def loss_interval(nll: np.ndarray, tokens: np.ndarray, settings: Settings) -> tuple[float, float]:
    """Bootstrap interval of the token-weighted loss, resampling conversations."""
    from scipy.stats import bootstrap

    result = bootstrap(
        (nll, tokens),
        lambda n, t, axis=-1: n.sum(axis=axis) / t.sum(axis=axis),
        paired=True,
        vectorized=True,
        confidence_level=settings.drift.confidence_level,
        n_resamples=settings.drift.bootstrap_resamples,
        method="percentile",
        rng=np.random.default_rng(settings.drift.seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def performance_drift(
    settings: Settings, model: ModelRef, card: dict[str, Any], records: list[dict[str, Any]]
) -> DriftStatistic | str:
    """The champion's loss on recent conversations against its loss at promotion, or the reason
    there is no verdict (too few conversations)."""
    config = settings.drift
    examples = recent_examples(settings, records)
    if len(examples) < config.performance_min_examples:
        return (
            f"not enough data: {len(examples)} recent conversations to score, "
            f"`drift.performance_min_examples` is {config.performance_min_examples}"
        )
    reference_set, at_promotion = promotion_loss(card)
    nll, tokens = answer_losses(settings, model, examples)
    low, high = loss_interval(nll, tokens, settings)
    increase = (low - at_promotion) / at_promotion
    return DriftStatistic(
        name="champion_loss",
        method=f"bootstrap {config.confidence_level:.0%} interval of answer loss vs promotion",
        value=round(increase, 5),
        threshold=config.max_loss_increase,
        drifted=increase > config.max_loss_increase,
        detail={
            "recent_loss": round(float(nll.sum() / tokens.sum()), 5),
            "interval_low": round(low, 5),
            "interval_high": round(high, 5),
            "promotion_loss": at_promotion,
            "examples": float(len(examples)),
            "reference_is_golden": float(reference_set == GOLDEN),
        },
    )
