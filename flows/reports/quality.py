"""The data gate's findings for a person in the Prefect UI: a markdown artifact with the bias
findings (category mix against its reference, each customer segment against the rest) and a
link artifact to the GX Data Docs of the run.

Only labels (category and segment names), counts, shares and check names: never record text.
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from tasks.config import QualitySettings
from tasks.gates.verdict import QualityReport

BIAS_CHECKS = ("representation.", "segments.")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mix_lines(mix: list[dict[str, Any]]) -> list[str]:
    categories = [row for row in mix if row.get("field") == "category"]
    if not categories:
        return ["No categories in this batch."]
    divergence = next(
        (r["js_divergence"] for r in categories if r.get("js_divergence") is not None), None
    )
    lines = [
        "Jensen-Shannon divergence vs the reference (the golden set's mix): "
        + ("no reference yet" if divergence is None else f"{divergence:.4f}"),
        "",
        "| category | share | reference share |",
        "|---|---|---|",
    ]
    rows = sorted(categories, key=lambda r: -(r.get("category_share") or 0))
    lines += [
        f"| {r['value']} | {_fmt(r.get('category_share'), '.1%')} "
        f"| {_fmt(r.get('reference_share'), '.1%')} |"
        for r in rows
    ]
    intents = [r for r in mix if r.get("field") == "intent"]
    if intents:
        top = max(intents, key=lambda r: r.get("intent_share") or 0)
        lines += [
            "",
            f"Largest intent: {top['value']} at {_fmt(top.get('intent_share'), '.1%')} "
            f"of {len(intents)} intents.",
        ]
    return lines


def _segment_lines(segments: list[dict[str, Any]], config: QualitySettings | None) -> list[str]:
    if not segments:
        return ["No segment has enough conversations on both sides to compare."]
    lines = []
    if config is not None:
        lines += [
            f"Bounds: reply-length ratio in [{config.min_reply_length_ratio:.2f}, "
            f"{1 / config.min_reply_length_ratio:.2f}], resolution gap ≤ "
            f"{config.max_resolution_gap:.2f}, CSAT gap ≤ {config.max_csat_gap:.2f}; segments "
            f"with at least {config.segment_min_conversations} conversations.",
            "",
        ]
    lines += [
        "| segment | conversations | reply length vs rest | resolution gap | CSAT gap |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['segment']} | {r['conversations']} | {_fmt(r.get('reply_length_ratio'), '.2f')} "
        f"| {_fmt(r.get('resolution_gap'), '.3f')} | {_fmt(r.get('csat_gap'), '.2f')} |"
        for r in segments
    ]
    return [*lines, "", "-: too few conversations with that label on one side to compare."]


def bias_markdown(report: QualityReport, config: QualitySettings | None = None) -> str:
    """The bias findings as markdown: which bias checks failed, the mix, the segments."""
    failed = [
        f"{c.name} ({c.severity})"
        for c in report.checks
        if c.result == "fail" and c.name.startswith(BIAS_CHECKS)
    ]
    lines = [
        "## Bias findings",
        "",
        "Failed bias checks: " + (", ".join(failed) if failed else "none"),
        "",
        "### Category mix",
        "",
        *_mix_lines(report.bias.get("mix", [])),
        "",
        "### Customer segments vs the rest",
        "",
        *_segment_lines(report.bias.get("segments", []), config),
    ]
    return "\n".join(lines)


def publish(report: QualityReport, config: QualitySettings | None = None) -> None:
    """Both artifacts of the validate stage (the check table is `flows.reports.stages.quality`)."""
    create_markdown_artifact(
        bias_markdown(report, config),
        key="retrain-bias",
        description="2 validate: category mix and segment parity",
    )
    if report.data_docs_url:
        create_link_artifact(
            report.data_docs_url,
            link_text="GX Data Docs",
            key="retrain-data-docs",
            description="2 validate: Great Expectations Data Docs of this run",
        )
