"""Evaluation and decision artifacts: what a person reads on the run page before trusting a model.

- `retrain-evaluation` (table): every metric per eval set and slice, incumbent vs challenger;
- `retrain-decision` (markdown): the verdict, every rule with pass/fail and its figures, a chart
  of incumbent vs challenger per slice with bootstrap intervals (PNG embedded as a data URI),
  and a few redacted example replies of both models.

Only metrics, rule outcomes and redacted replies go here (see tasks/evaluate/scoring.py: redaction).
"""

from __future__ import annotations

import base64
import io

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.evaluate.aggregate import GOLDEN, Comparison, SliceMetrics
from tasks.promote.policy import LOWER_IS_BETTER, Decision, Interval

CHART_SLICES = 16  # the largest slices; all of them are in the table
# The UI does not wrap table cells: with a long intent name the table needed a horizontal scroll
# at a 1440 px window (seen in headless Chromium, deployments/ui_check.py). Measured there: with
# slice labels of at most 28 characters and the safety column showing the challenger's rates
# only, the table fits 1440 px with a 40-character upper-case category and a loss of 10.815;
# a label longer than this keeps its start and end around an ellipsis (the decision artifact's
# chart and the registry's card keep the full names).
SLICE_LABEL_CHARS = 28
SAFETY = "PII/off."


# metric → column title; shown as `incumbent → challenger` (loss 3 decimals, shares 2)
COLUMNS = {
    "loss": "loss",
    "token_accuracy": "token acc.",
    "rouge_l": "ROUGE-L",
    "similarity": "similarity",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
}


def evaluation_rows(comparisons: dict[str, Comparison]) -> list[dict]:
    """One row per set and slice, one column per metric: `incumbent → challenger`.

    Two columns per metric made a table of 15 columns that the Prefect UI cut off at the
    right (seen in headless Chromium, deployments/ui_check.py); the two safety rates share
    one column (`PII/off.`: the challenger's shares of replies with new personal data /
    offensive; the gate in `retrain-decision` compares both models' rates)."""
    rows = []
    for eval_set, pair in comparisons.items():
        before = pair.incumbent.by_slice()
        for name, after in pair.challenger.by_slice().items():
            old = before.get(name)
            row = {"set": eval_set, "slice": slice_label(name), "n": after.examples}
            for metric, title in COLUMNS.items():
                new_value, old_value = getattr(after, metric), getattr(old, metric, None)
                if new_value is not None or old_value is not None:
                    digits = 3 if metric == "loss" else 2
                    row[title] = f"{_number(old_value, digits)} → {_number(new_value, digits)}"
            row[SAFETY] = _safety(after)
            rows.append(row)
    return rows


def slice_label(name: str, limit: int = SLICE_LABEL_CHARS) -> str:
    """`intent:billing_dispute_escalation_to_a_supervisor` → `intent:billing…_a_supervisor`:
    at most `limit` characters, the kind and the distinctive ends of the name kept."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2 + 1
    return f"{name[:head]}…{name[len(name) - (limit - 1 - head) :]}"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _safety(metrics: SliceMetrics | None) -> str:
    if metrics is None or metrics.new_pii_rate is None:
        return "-"
    return f"{metrics.new_pii_rate:.0%}/{metrics.offensive_rate or 0:.0%}"


def evaluation(comparisons: dict[str, Comparison]) -> None:
    models = next(iter(comparisons.values()))
    create_table_artifact(
        evaluation_rows(comparisons),
        key="retrain-evaluation",
        description=f"5 evaluate: each cell is incumbent → challenger; the incumbent is "
        f"{models.incumbent.model}; {SAFETY}: the challenger's share of replies with new "
        "personal data / offensive ones (the gate in retrain-decision compares both models)",
    )


def slice_chart(overall: Interval, slices: dict[str, Interval], title: str) -> bytes:
    """PNG: left, incumbent and challenger mean per slice; right, the paired improvement with
    its bootstrap interval (right of zero = challenger better)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    largest = sorted(slices.items(), key=lambda kv: -kv[1].examples)[:CHART_SLICES]
    items = [("overall", overall), *sorted(largest)]
    labels = [f"{name} (n={i.examples})" for name, i in items]
    y = list(range(len(items)))[::-1]
    fig, (means, diffs) = plt.subplots(
        1, 2, figsize=(10, 0.35 * len(items) + 1.4), sharey=True, dpi=80
    )
    means.scatter([i.incumbent_mean for _, i in items], y, marker="o", label="incumbent")
    means.scatter([i.challenger_mean for _, i in items], y, marker="D", label="challenger")
    means.set_yticks(y, labels, fontsize=8)
    better = "lower" if overall.metric in LOWER_IS_BETTER else "higher"
    means.set_xlabel(f"{overall.metric} ({better} is better)")
    means.legend(fontsize=8, loc="best")
    centres = [i.improvement for _, i in items]
    colours = [
        "tab:green" if i.low > 0 else "tab:red" if i.high < 0 else "tab:gray" for _, i in items
    ]
    # hlines takes one colour per interval (errorbar's ecolor takes only one)
    diffs.hlines(y, [i.low for _, i in items], [i.high for _, i in items], colors=colours)
    diffs.scatter(centres, y, c=colours, zorder=3)
    diffs.axvline(0, color="black", linewidth=0.8)
    diffs.set_xlabel(f"improvement, {overall.confidence:.0%} paired bootstrap interval")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def decision_markdown(decision: Decision, comparisons: dict[str, Comparison]) -> str:
    golden = comparisons[GOLDEN]
    verdict = "PROMOTE" if decision.promote else "DO NOT PROMOTE"
    against = (
        "the champion" if decision.branch == "champion" else "the base model (no champion yet)"
    )
    lines = [
        f"## Gate: **{verdict}**",
        "",
        f"{golden.challenger.model} vs {against}, `{golden.incumbent.model}`; "
        f"primary metric `{decision.primary_metric}`",
        "",
        *[f"- {reason}" for reason in decision.reasons],
        "",
        "### Rules",
        "",
        # a list, not a table: the UI does not wrap table cells and cut the details off
        *[
            f"- {'**pass**' if c.passed else '**FAIL**'} · {c.rule}: {c.detail}"
            for c in decision.checks
        ],
    ]
    if decision.interval:
        png = slice_chart(
            decision.interval,
            decision.slices,
            f"golden set: {golden.challenger.model} vs {golden.incumbent.model}",
        )
        encoded = base64.b64encode(png).decode()
        lines += ["", f"![incumbent vs challenger per slice](data:image/png;base64,{encoded})"]
    replies = {s["id"]: s["reply"] for s in golden.incumbent.sample}
    if golden.challenger.sample:  # one block per example: long replies wrap in a list
        lines += ["", "### Sample replies (redacted)"]
        for n, sample in enumerate(golden.challenger.sample, 1):
            lines += [
                "",
                f"**{n}. {_cell(sample['category'], 40)}**: {_cell(sample['customer'])}",
                f"- reference: {_cell(sample['reference'])}",
                f"- incumbent: {_cell(replies.get(sample['id'], ''))}",
                f"- challenger: {_cell(sample['reply'])}",
            ]
    return "\n".join(lines)


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decision(decision: Decision, comparisons: dict[str, Comparison]) -> str:
    markdown = decision_markdown(decision, comparisons)
    create_markdown_artifact(markdown, key="retrain-decision", description="6 promote: the gate")
    return markdown
