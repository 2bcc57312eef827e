"""Performance drift of the champion: its answer loss on recent conversations against the loss in
its card, with a bootstrap interval, scored by the project's own evaluation code."""

from __future__ import annotations

import pytest

from tasks.evaluate.aggregate import ModelRef, aggregate, load_model, score_examples
from tasks.monitor.performance_drift import (
    answer_losses,
    per_example_scores,
    performance_drift,
    recent_examples,
)
from tests.helpers.synthetic_logs import make_logs


@pytest.fixture(scope="module")
def tiny_ref(tiny_model_dir) -> ModelRef:
    return ModelRef(label="tiny champion", base_model_dir=str(tiny_model_dir), version="v1")


def card_with_loss(loss: float) -> dict:
    overall = {"loss": loss}
    return {
        "name": "support-bot",
        "version": "v1",
        "evaluation": {"recent": {"challenger": {"overall": overall}}},
    }


def test_per_example_scores_add_up_to_the_promotion_metric(settings, tiny_ref):
    examples = recent_examples(settings, make_logs(24, seed=11))
    local = load_model(tiny_ref)
    rows = per_example_scores(local, examples, settings)
    # the promotion metric: the full scorer's rows aggregated as the evaluation report does
    short_replies = settings.evaluation.model_copy(update={"max_new_tokens": 4})
    overall = aggregate(score_examples(local, examples, short_replies))
    assert len(rows) == len(examples) and all(tokens > 0 for _, tokens in rows)
    pooled = sum(nll for nll, _ in rows) / sum(tokens for _, tokens in rows)
    assert pooled == pytest.approx(overall.loss, rel=1e-4)


def test_same_quality_as_at_promotion_does_not_fire_a_clearly_worse_one_does(settings, tiny_ref):
    settings = settings.model_copy(
        update={"drift": settings.drift.model_copy(update={"performance_examples": 40})}
    )
    # the card's loss is the model's own loss on another window from the same distribution
    nll, tokens = answer_losses(settings, tiny_ref, recent_examples(settings, make_logs(40, 12)))
    at_promotion = float(nll.sum() / tokens.sum())
    window = make_logs(60, seed=13)

    same = performance_drift(settings, tiny_ref, card_with_loss(at_promotion), window)
    assert not same.drifted, same
    assert same.detail["interval_low"] <= same.detail["recent_loss"] <= same.detail["interval_high"]
    assert same.detail["examples"] == 40

    # promoted at a loss 30% lower than it reaches now: the whole interval is worse
    worse = performance_drift(settings, tiny_ref, card_with_loss(at_promotion * 0.7), window)
    assert worse.drifted and worse.value > settings.drift.max_loss_increase


def test_too_few_conversations_or_no_metrics_in_the_card(settings, tiny_ref):
    verdict = performance_drift(settings, tiny_ref, card_with_loss(1.0), make_logs(12, seed=14))
    assert isinstance(verdict, str) and verdict.startswith("not enough data")
    with pytest.raises(ValueError, match="records no evaluation"):
        performance_drift(settings, tiny_ref, {"name": "m", "version": "v0"}, make_logs(60, 15))
