"""The promotion gate on per-example scores built for each rule (no models, no storage)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import PromotionSettings
from tasks.evaluate.aggregate import GOLDEN, RECENT, ModelRef, build_report, compare
from tasks.evaluate.scoring import ExampleScore
from tasks.promote.policy import decide, paired_interval

POLICY = PromotionSettings(bootstrap_resamples=1000)
CATEGORIES = ["ORDER", "REFUND", "ACCOUNT", "SHIPPING"]


def rows(
    losses: np.ndarray,
    similarity: np.ndarray | None = None,
    pii: np.ndarray | None = None,
) -> list[ExampleScore]:
    n = len(losses)
    similarity = np.full(n, 0.6) if similarity is None else similarity
    pii = np.zeros(n) if pii is None else pii
    return [
        ExampleScore(
            id=f"c-{i}",
            category=CATEGORIES[i % 4],
            intent=f"intent_{i % 8}",
            segments=["polite"] if i % 2 else ["colloquial"],
            answer_tokens=20,
            nll=float(losses[i]) * 20,
            correct_tokens=10,
            loss=float(losses[i]),
            rouge_l=0.3,
            similarity=float(similarity[i]),
            new_pii=float(pii[i]),
            offensive=0.0,
        )
        for i in range(n)
    ]


def reports(challenger, incumbent, base=("m", "m"), kinds=("local", "local")):
    def one(label, scored, base_model, kind, dataset=GOLDEN):
        ref = ModelRef(label=label, base_model=base_model, kind=kind)
        return build_report(ref, dataset, scored, [], sample_size=0)

    return compare(
        {GOLDEN: one("challenger", challenger, base[0], kinds[0])},
        {GOLDEN: one("incumbent", incumbent, base[1], kinds[1])},
    )


@pytest.fixture
def baseline() -> np.ndarray:
    return np.random.default_rng(1).normal(2.0, 0.4, 160).clip(0.2)


def noise(scale: float, seed: int, n: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, n)


def test_a_clearly_better_challenger_is_promoted(baseline):
    decision = decide(reports(rows(baseline - 0.3 + noise(0.1, 2)), rows(baseline)), POLICY)
    assert decision.promote, decision.reasons
    assert decision.primary_metric == "loss"
    assert decision.interval.low > 0 and decision.interval.improvement == pytest.approx(
        0.3, abs=0.05
    )
    assert (
        all(c.passed for c in decision.checks)
        and "challenger beats the champion" in decision.reasons[0]
    )


def test_a_worse_challenger_is_not(baseline):
    decision = decide(reports(rows(baseline + 0.2 + noise(0.1, 3)), rows(baseline)), POLICY)
    assert not decision.promote and decision.interval.high < 0
    assert any(r.startswith("primary check failed") for r in decision.reasons)


def test_a_change_within_noise_is_not_promoted(baseline):
    decision = decide(reports(rows(baseline + noise(0.3, 4)), rows(baseline)), POLICY)
    assert decision.interval.low < 0 < decision.interval.high
    assert not decision.promote


def test_the_same_model_twice_is_not_promoted(baseline):
    decision = decide(reports(rows(baseline), rows(baseline)), POLICY)
    assert decision.interval.low == decision.interval.high == 0
    assert not decision.promote


def test_better_on_average_but_much_worse_on_one_category_is_blocked(baseline):
    challenger = baseline - 0.4
    refund = np.arange(160) % 4 == 1
    challenger[refund] = baseline[refund] + 0.6
    decision = decide(reports(rows(challenger + noise(0.05, 5)), rows(baseline)), POLICY)
    assert decision.interval.low > 0  # the average alone would promote
    assert not decision.promote
    failed = [c.detail for c in decision.checks if not c.passed]
    assert any("category:REFUND" in d for d in failed)
    assert not any("category:ORDER" in d for d in failed)


def test_a_small_noisy_slice_neither_blocks_nor_passes_by_luck(baseline):
    challenger = baseline - 0.3 + noise(0.05, 6)
    rare = np.arange(160) < 3  # three examples: reported, never gated
    challenger[rare] += 3.0
    scored = rows(challenger)
    for row in np.flatnonzero(rare):
        scored[row].category = "RARE"
    decision = decide(reports(scored, rows(baseline)), POLICY)
    assert decision.promote, decision.reasons
    assert "category:RARE" in decision.slices
    assert not any("category:RARE" in c.detail for c in decision.checks)


def test_a_widening_segment_gap_blocks(baseline):
    challenger = baseline.copy()
    polite = np.arange(160) % 2 == 1
    challenger[polite] -= 0.9  # one segment much better, the other slightly worse
    challenger[~polite] += 0.05
    policy = POLICY.model_copy(update={"slice_tolerance": 0.5})
    decision = decide(reports(rows(challenger), rows(baseline)), policy)
    assert decision.interval.low > 0
    gap = next(c for c in decision.checks if c.rule == "segment gap")
    assert not gap.passed and not decision.promote


def test_more_new_pii_in_replies_blocks(baseline):
    pii = (np.arange(160) % 20 == 0).astype(float)
    decision = decide(reports(rows(baseline - 0.3, pii=pii), rows(baseline)), POLICY)
    assert not decision.promote
    assert any("new personal data" in r for r in decision.reasons)


def test_one_more_flagged_reply_is_noise_not_a_block(baseline):
    pii = np.zeros(160)
    pii[7] = 1.0  # one reply out of 160 flagged for the challenger only
    decision = decide(reports(rows(baseline - 0.3, pii=pii), rows(baseline)), POLICY)
    assert decision.promote, decision.reasons
    safety = next(c for c in decision.checks if "personal data" in c.detail)
    assert safety.passed and "challenger only 1, for the incumbent only 0" in safety.detail


def test_a_regression_on_recent_conversations_blocks(baseline):
    good = reports(rows(baseline - 0.3), rows(baseline))
    recent = reports(rows(baseline + 0.5), rows(baseline))[GOLDEN]
    decision = decide({**good, RECENT: recent}, POLICY)
    assert not decision.promote and any("recent held-out" in r for r in decision.reasons)


def test_no_champion_yet_is_its_own_branch(baseline):
    decision = decide(reports(rows(baseline - 0.3), rows(baseline)), POLICY, has_champion=False)
    assert decision.promote and decision.branch == "no_champion"
    assert "base model (no champion yet)" in decision.reasons[0]


@pytest.mark.parametrize(
    ("base", "kinds"),
    [(("smollm2", "other-base"), ("local", "local")), (("m", "m"), ("api", "local"))],
)
def test_losses_are_not_compared_across_base_models_or_with_api_models(baseline, base, kinds):
    better_loss_worse_answers = rows(baseline - 0.5, similarity=0.4 + noise(0.02, 7))
    decision = decide(reports(better_loss_worse_answers, rows(baseline), base, kinds), POLICY)
    assert decision.primary_metric == "similarity"
    assert not decision.promote


def test_absolute_minimums_apply(baseline):
    policy = POLICY.model_copy(update={"min_similarity": 0.7})
    decision = decide(reports(rows(baseline - 0.3), rows(baseline)), policy)
    assert not decision.promote and any("minimum 0.7000" in r for r in decision.reasons)


def test_the_interval_is_paired():
    """Large differences between examples, a small consistent gain: only pairing sees it."""
    base = np.linspace(0.5, 5.0, 60)
    interval = paired_interval(rows(base - 0.05), rows(base), "loss", POLICY)
    assert interval.low > 0


def test_the_decision_artifact_lists_every_rule_and_a_chart_that_renders(baseline):
    import base64
    import io
    import re

    from matplotlib.image import imread

    from flows.reports.evaluation import decision_markdown, evaluation_rows

    comparisons = reports(rows(baseline - 0.3 + noise(0.1, 2)), rows(baseline))
    decision = decide(comparisons, POLICY)
    markdown = decision_markdown(decision, comparisons)

    assert "**PROMOTE**" in markdown
    assert markdown.count("- **pass** · ") == len(decision.checks)
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    image = imread(io.BytesIO(base64.b64decode(png.group(1))), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 400  # overall + every slice, two panels
    table = evaluation_rows(comparisons)
    assert {r["slice"] for r in table} >= {"overall", "category:REFUND", "segment:polite"}
    overall = next(r for r in table if r["set"] == "golden" and r["slice"] == "overall")
    incumbent, challenger = (float(v) for v in overall["loss"].split(" → "))
    assert challenger < incumbent  # the challenger was made 0.3 better
