"""Registry: the promotion policy and alias moves that cannot race."""

from __future__ import annotations

import pytest

from tasks.config import EvaluationSettings
from tasks.evaluate import GOLDEN, RECENT, EvalReport, ModelRef, SliceMetrics, compare
from tasks.registry import (
    CHAMPION,
    Champion,
    Decision,
    apply_decision,
    current_champion,
    decide,
    model_prefix,
)
from tasks.s3 import ConcurrentUpdateError, get_json, list_objects, put_json, s3_client

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


def champion_alias(settings) -> tuple[dict | None, str | None]:
    alias = get_json(
        s3_client(settings.s3),
        settings.s3.bucket,
        f"{model_prefix(settings)}aliases/{CHAMPION}.json",
    )
    return alias.body, alias.etag


def test_first_promotion_creates_the_alias_and_a_second_must_match_it(settings, smollm2_dir):
    base = current_champion.fn(settings)
    assert base.alias_etag is None and base.model.adapter_dir is None
    win = Decision(promote=True, reasons=["better"])

    apply_decision.fn(settings, "v1", win, base, run_id="r1")
    body, etag = champion_alias(settings)
    assert body["version"] == "v1"

    # A run that read "no champion yet" before v1 was promoted must not overwrite it.
    with pytest.raises(ConcurrentUpdateError):
        apply_decision.fn(settings, "v2", win, base, run_id="r2")
    assert champion_alias(settings)[0]["version"] == "v1"

    v1 = Champion(model=ModelRef(label="v1", base_model_dir="x", version="v1"), alias_etag=etag)
    apply_decision.fn(settings, "v2", win, v1, run_id="r3")
    assert champion_alias(settings)[0]["version"] == "v2"
    previous = get_json(
        s3_client(settings.s3), settings.s3.bucket, f"{model_prefix(settings)}aliases/previous.json"
    )
    assert previous.body["version"] == "v1"


def test_rejection_leaves_the_alias_and_writes_an_audit_event(settings):
    client = s3_client(settings.s3)
    put_json(
        client,
        settings.s3.bucket,
        f"{model_prefix(settings)}aliases/{CHAMPION}.json",
        {"version": "v1"},
    )
    before = champion_alias(settings)
    champion = Champion(
        model=ModelRef(label="v1", base_model_dir="x", version="v1"), alias_etag=before[1]
    )
    event_key = apply_decision.fn(
        settings, "v2", Decision(promote=False, reasons=["worse"]), champion, run_id="r1"
    )
    assert champion_alias(settings) == before
    events = [
        o["Key"]
        for o in list_objects(client, settings.s3.bucket, f"{model_prefix(settings)}events/")
    ]
    assert events == [event_key] and event_key.endswith("-reject.json")
    assert get_json(client, settings.s3.bucket, event_key).body["reasons"] == ["worse"]
