"""The promotion policy on hand-built reports (no models, no storage)."""

from __future__ import annotations

import pytest

from tasks.config import EvaluationSettings
from tasks.evaluate import GOLDEN, RECENT, EvalReport, SliceMetrics, compare
from tasks.policy import decide

POLICY = EvaluationSettings(min_improvement=0.01, max_slice_regression=0.10, slice_min_examples=5)


def metrics(loss: float, examples: int = 10) -> SliceMetrics:
    return SliceMetrics(
        examples=examples, tokens=100, loss=loss, perplexity=2.0, token_accuracy=0.5
    )


def report(loss: float, slices: dict[str, SliceMetrics] | None = None) -> EvalReport:
    return EvalReport(model="m", dataset=GOLDEN, overall=metrics(loss), slices=slices or {})


@pytest.mark.parametrize(
    ("challenger", "incumbent", "promote"),
    [(1.0, 2.0, True), (1.99, 2.0, False), (1.98, 2.0, True), (2.5, 2.0, False)],
)
def test_promotion_needs_the_configured_relative_improvement(challenger, incumbent, promote):
    decision = decide(compare({GOLDEN: report(challenger)}, {GOLDEN: report(incumbent)}), POLICY)
    assert decision.promote is promote
    assert f"{incumbent:.4f} → {challenger:.4f}" in decision.reasons[0]


def test_a_regressing_category_blocks_promotion_despite_a_better_average():
    challenger = report(1.0, {"ORDER": metrics(0.5), "REFUND": metrics(2.5)})
    incumbent = report(2.0, {"ORDER": metrics(2.0), "REFUND": metrics(2.0)})
    decision = decide(compare({GOLDEN: challenger}, {GOLDEN: incumbent}), POLICY)
    assert not decision.promote
    assert decision.reasons == ["golden slice REFUND regressed: loss 2.0000 → 2.5000"]


def test_categories_too_small_to_judge_are_not_gated():
    challenger = report(1.0, {"RARE": metrics(3.0, examples=2)})
    incumbent = report(2.0, {"RARE": metrics(2.0, examples=2)})
    assert decide(compare({GOLDEN: challenger}, {GOLDEN: incumbent}), POLICY).promote


def test_a_regression_on_recent_conversations_blocks_promotion():
    challenger = {GOLDEN: report(1.0), RECENT: report(2.5)}
    incumbent = {GOLDEN: report(2.0), RECENT: report(2.0)}
    decision = decide(compare(challenger, incumbent), POLICY)
    assert not decision.promote
    assert "recent held-out regressed" in decision.reasons[0]
