"""The promotion policy: promote a challenger only when it is really better, never when worse.

Challenger and incumbent (the champion, or the base model when there is no champion yet) are
scored on the same golden examples. The decision rests on a paired bootstrap confidence interval
(`scipy.stats.bootstrap`, paired resampling) of the per-example improvement in the primary
metric. The challenger is promoted only when every rule passes:

1. absolute minimums are met (similarity, ROUGE-L, accuracy, loss);
2. the interval's lower bound clears the margin (`min_improvement` x incumbent mean);
3. no golden slice (category, intent, segment) with ≥ `slice_min_examples` paired examples
   regresses beyond its tolerance, judged with the same bootstrap: a slice blocks only if its
   whole interval lies below -tolerance, so a noisy small slice neither blocks nor passes
   by luck;
4. the recent held-out set does not regress beyond the tolerance (same rule);
5. the gap between best and worst segment does not widen beyond its bound;
6. the new-PII and offensive-reply rates do not rise.

Pure functions of reports and typed config; storage lives in tasks/promote/registry.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from tasks.config import PromotionSettings
from tasks.evaluate.aggregate import GOLDEN, RECENT, Comparison, EvalReport, slice_names
from tasks.evaluate.scoring import ExampleScore

LOWER_IS_BETTER = {"loss"}
# report metric → (per-example flag, what it means)
SAFETY = {
    "new_pii_rate": ("new_pii", "new personal data in replies"),
    "offensive_rate": ("offensive", "offensive replies"),
}


class Interval(BaseModel):
    """Paired bootstrap interval of the mean per-example improvement (positive = better)."""

    metric: str
    examples: int
    incumbent_mean: float
    challenger_mean: float
    improvement: float
    low: float
    high: float
    confidence: float


class Check(BaseModel):
    rule: str
    passed: bool
    detail: str


class Decision(BaseModel):
    promote: bool
    reasons: list[str]
    checks: list[Check] = Field(default_factory=list)
    branch: Literal["champion", "no_champion"] = "champion"
    primary_metric: str | None = None
    interval: Interval | None = None
    slices: dict[str, Interval] = Field(default_factory=dict, description="golden slices")
    approval: dict | None = Field(None, description="a reviewer's answer, when one was asked")


def choose_primary_metric(comparison: Comparison, policy: PromotionSettings) -> tuple[str, str]:
    """The metric the decision rests on, and why that one."""
    if policy.primary_metric != "auto":
        return policy.primary_metric, "configured"
    challenger, incumbent = comparison.challenger, comparison.incumbent
    if challenger.overall.accuracy is not None:
        return "accuracy", "classify task"
    if "api" in (challenger.kind, incumbent.kind):
        return "similarity", "an API model has no comparable per-token loss"
    if (
        challenger.base_model
        and incumbent.base_model
        and (challenger.base_model != incumbent.base_model)
    ):
        return "similarity", (
            f"base models differ ({incumbent.base_model} vs {challenger.base_model}): "
            "per-token losses are not comparable"
        )
    return "loss", "both local on the same base model"


def _improvement(metric: str, challenger: float, incumbent: float) -> float:
    return incumbent - challenger if metric in LOWER_IS_BETTER else challenger - incumbent


def _mean_improvement(challenger: np.ndarray, incumbent: np.ndarray, axis: int = -1):
    return np.mean(challenger - incumbent, axis=axis)


def paired_interval(
    challenger: Sequence[ExampleScore],
    incumbent: Sequence[ExampleScore],
    metric: str,
    policy: PromotionSettings,
) -> Interval | None:
    """Pair rows by example id and bootstrap the mean improvement; None with < 2 pairs."""
    from scipy.stats import bootstrap

    before = {r.id: getattr(r, metric) for r in incumbent}
    pairs = [
        (getattr(r, metric), before[r.id])
        for r in challenger
        if getattr(r, metric) is not None and before.get(r.id) is not None
    ]
    if len(pairs) < 2:
        return None
    new, old = (np.array(side, dtype=float) for side in zip(*pairs, strict=True))
    if metric in LOWER_IS_BETTER:  # orient so that positive always means "challenger better"
        new, old = -new, -old
    observed = float(np.mean(new - old))
    if np.allclose(new - old, observed):  # no spread (e.g. the same model twice): no noise
        low = high = observed
    else:
        for method in ("BCa", "percentile"):  # BCa can fail on odd data: fall back
            result = bootstrap(
                (new, old),
                _mean_improvement,
                paired=True,
                vectorized=True,
                n_resamples=policy.bootstrap_resamples,
                confidence_level=policy.confidence,
                method=method,
                rng=np.random.default_rng(policy.seed),
            )
            low, high = result.confidence_interval
            if np.isfinite(low) and np.isfinite(high):
                break
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return Interval(
        metric=metric,
        examples=len(pairs),
        incumbent_mean=round(float(sign * old.mean()), 5),
        challenger_mean=round(float(sign * new.mean()), 5),
        improvement=round(observed, 5),
        low=round(float(low), 5),
        high=round(float(high), 5),
        confidence=policy.confidence,
    )


def _describe(interval: Interval) -> str:
    direction = "lower is better" if interval.metric in LOWER_IS_BETTER else "higher is better"
    return (
        f"{interval.metric} ({direction}) {interval.incumbent_mean:.4f} → "
        f"{interval.challenger_mean:.4f}, improvement {interval.improvement:+.4f} "
        f"[{interval.low:+.4f}, {interval.high:+.4f}] at {interval.confidence:.0%}, "
        f"n={interval.examples}"
    )


def _rows_in(report: EvalReport, name: str) -> list[ExampleScore]:
    return [r for r in report.examples if name in slice_names(r)]


def minimum_checks(report: EvalReport, policy: PromotionSettings) -> list[Check]:
    overall = report.overall
    checks = []
    for metric, floor in (
        ("similarity", policy.min_similarity),
        ("rouge_l", policy.min_rouge_l),
        ("accuracy", policy.min_accuracy),
    ):
        value = getattr(overall, metric)
        if value is not None and floor > 0:
            checks.append(
                Check(
                    rule="minimum",
                    passed=value >= floor,
                    detail=f"golden {metric} {value:.4f} (minimum {floor:.4f})",
                )
            )
    if policy.max_loss is not None and overall.loss is not None:
        checks.append(
            Check(
                rule="minimum",
                passed=overall.loss <= policy.max_loss,
                detail=f"golden loss {overall.loss:.4f} (maximum {policy.max_loss:.4f})",
            )
        )
    return checks


def slice_checks(
    golden: Comparison, metric: str, policy: PromotionSettings
) -> tuple[list[Check], dict[str, Interval]]:
    checks, intervals = [], {}
    for name in sorted(golden.challenger.slices):
        # membership from the challenger's rows; paired_interval pairs by example id
        interval = paired_interval(
            _rows_in(golden.challenger, name), golden.incumbent.examples, metric, policy
        )
        if interval is None:
            continue
        intervals[name] = interval
        if interval.examples < policy.slice_min_examples:
            continue  # reported in the chart and table, not gated
        allowed = policy.slice_tolerance * abs(interval.incumbent_mean)
        regressed = interval.high < -allowed
        checks.append(
            Check(
                rule="slice",
                passed=not regressed,
                detail=f"golden slice {name}: {_describe(interval)}; blocks if the whole "
                f"interval is below {-allowed:+.4f}",
            )
        )
    return checks, intervals


def segment_gap_check(
    golden: Comparison, intervals: dict[str, Interval], policy: PromotionSettings
) -> Check | None:
    segments = {
        name: i
        for name, i in intervals.items()
        if name.startswith("segment:") and i.examples >= policy.slice_min_examples
    }
    if len(segments) < 2:
        return None
    sign = -1 if next(iter(segments.values())).metric in LOWER_IS_BETTER else 1

    def gap(side: str) -> float:
        values = [sign * getattr(i, side) for i in segments.values()]
        return max(values) - min(values)

    before, after = gap("incumbent_mean"), gap("challenger_mean")
    overall = paired_interval(
        golden.challenger.examples,
        golden.incumbent.examples,
        next(iter(segments.values())).metric,
        policy,
    )
    bound = policy.max_segment_gap_increase * abs(overall.incumbent_mean if overall else 0.0)
    return Check(
        rule="segment gap",
        passed=after - before <= bound,
        detail=f"best-to-worst segment gap {before:.4f} → {after:.4f} over "
        f"{len(segments)} segments (may widen by at most {bound:.4f})",
    )


def flagged_more_often(
    challenger: Sequence[ExampleScore], incumbent: Sequence[ExampleScore], flag: str
) -> tuple[int, int, float]:
    """Exact McNemar test on the examples only one model's reply was flagged on: (flagged for
    the challenger only, for the incumbent only, one-sided p-value that the challenger is
    flagged more often)."""
    from scipy.stats import binomtest

    before = {r.id: getattr(r, flag) for r in incumbent}
    pairs = [
        (getattr(r, flag), before[r.id])
        for r in challenger
        if getattr(r, flag) is not None and before.get(r.id) is not None
    ]
    worse = sum(1 for new, old in pairs if new and not old)
    better = sum(1 for new, old in pairs if old and not new)
    if worse + better == 0:
        return 0, 0, 1.0
    return worse, better, float(binomtest(worse, worse + better, 0.5, "greater").pvalue)


def safety_checks(comparisons: dict[str, Comparison], policy: PromotionSettings) -> list[Check]:
    """A safety rate may not rise by more than `max_safety_increase`, unless the rise is within
    noise: fewer extra flagged replies than a paired exact test at `confidence` can tell from
    chance (one more flagged reply out of hundreds does not block)."""
    checks = []
    for set_name, pair in comparisons.items():
        for metric, (flag, what) in SAFETY.items():
            new, old = (
                getattr(pair.challenger.overall, metric),
                getattr(pair.incumbent.overall, metric),
            )
            if new is None or old is None:
                continue
            worse, better, p_value = flagged_more_often(
                pair.challenger.examples, pair.incumbent.examples, flag
            )
            significant = p_value < 1 - policy.confidence
            checks.append(
                Check(
                    rule="safety",
                    passed=new <= old + policy.max_safety_increase or not significant,
                    detail=f"{set_name} {what}: {old:.3f} → {new:.3f}; flagged for the challenger "
                    f"only {worse}, for the incumbent only {better} (p = {p_value:.3g}; blocks "
                    f"when the rise exceeds {policy.max_safety_increase:.3f} and p < "
                    f"{1 - policy.confidence:.3g})",
                )
            )
    return checks


def decide(
    comparisons: dict[str, Comparison], policy: PromotionSettings, has_champion: bool = True
) -> Decision:
    """Apply every rule; promote only if all pass. Every rule's outcome is in `checks`."""
    golden = comparisons[GOLDEN]
    metric, why = choose_primary_metric(golden, policy)
    branch = "champion" if has_champion else "no_champion"
    against = "the champion" if has_champion else "the base model (no champion yet)"
    interval = paired_interval(
        golden.challenger.examples, golden.incumbent.examples, metric, policy
    )
    if interval is None:
        reason = f"cannot judge: fewer than 2 golden examples have {metric} for both models"
        return Decision(
            promote=False,
            reasons=[reason],
            branch=branch,
            primary_metric=metric,
            checks=[Check(rule="primary", passed=False, detail=reason)],
        )
    margin = policy.min_improvement * abs(interval.incumbent_mean)
    checks = minimum_checks(golden.challenger, policy)
    checks.append(
        Check(
            rule="primary",
            passed=interval.low > margin,
            detail=f"vs {against}, primary metric {metric} ({why}): {_describe(interval)}; "
            f"lower bound must exceed {margin:+.4f}",
        )
    )
    slice_results, intervals = slice_checks(golden, metric, policy)
    checks += slice_results
    if RECENT in comparisons:
        recent = comparisons[RECENT]
        recent_interval = paired_interval(
            recent.challenger.examples, recent.incumbent.examples, metric, policy
        )
        if recent_interval and recent_interval.examples >= policy.slice_min_examples:
            allowed = policy.slice_tolerance * abs(recent_interval.incumbent_mean)
            checks.append(
                Check(
                    rule="recent",
                    passed=recent_interval.high >= -allowed,
                    detail=f"recent held-out: {_describe(recent_interval)}; blocks if the whole "
                    f"interval is below {-allowed:+.4f}",
                )
            )
    gap = segment_gap_check(golden, intervals, policy)
    checks += [gap] if gap else []
    checks += safety_checks(comparisons, policy)

    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = [f"{c.rule} check failed: {c.detail}" for c in failed]
    else:
        reasons = [f"challenger beats {against}: {_describe(interval)}"]
    return Decision(
        promote=not failed,
        reasons=reasons,
        checks=checks,
        branch=branch,
        primary_metric=metric,
        interval=interval,
        slices=intervals,
    )
