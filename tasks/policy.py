"""The promotion policy: given challenger and incumbent scored on the same examples, promote or not,
and say why. Pure functions of reports and typed config; storage lives in tasks/registry.py.
"""

from __future__ import annotations

from pydantic import BaseModel

from tasks.config import EvaluationSettings
from tasks.evaluate import GOLDEN, RECENT, Comparison


class Decision(BaseModel):
    promote: bool
    reasons: list[str]


def _regression(new: float, old: float) -> float:
    return (new - old) / old if old else 0.0


def decide(comparisons: dict[str, Comparison], policy: EvaluationSettings) -> Decision:
    """Promote only if the golden loss drops by the margin and no guardrail is broken.

    Guardrails: no golden category with enough examples, and not the recent held-out set, may
    be worse than the incumbent by more than `max_slice_regression`.
    """
    golden = comparisons[GOLDEN]
    new, old = golden.challenger.overall.loss, golden.incumbent.overall.loss
    change = -_regression(new, old)
    headline = (
        f"golden loss {old:.4f} → {new:.4f} "
        f"({change:+.1%} improvement, need ≥ {policy.min_improvement:.1%})"
    )
    blockers = []
    if change < policy.min_improvement:
        blockers.append(f"not enough improvement: {headline}")
    for name, after in golden.challenger.slices.items():
        before = golden.incumbent.slices.get(name)
        if before is None or after.examples < policy.slice_min_examples:
            continue
        if _regression(after.loss, before.loss) > policy.max_slice_regression:
            blockers.append(
                f"golden slice {name} regressed: loss {before.loss:.4f} → {after.loss:.4f}"
            )
    if RECENT in comparisons:
        recent = comparisons[RECENT]
        after, before = recent.challenger.overall.loss, recent.incumbent.overall.loss
        if _regression(after, before) > policy.max_slice_regression:
            blockers.append(f"recent held-out regressed: loss {before:.4f} → {after:.4f}")
    if blockers:
        return Decision(promote=False, reasons=blockers)
    return Decision(promote=True, reasons=[f"challenger wins: {headline}"])
