"""The monitor's report: a table of statistics, thresholds and verdicts, and a chart of each
statistic against its threshold over recent runs. Only numbers and class names, never text."""

from __future__ import annotations

import base64
import io
from typing import Any

from tasks.monitor.data_drift import DriftStatistic


def trend_chart(history: list[dict[str, Any]]) -> bytes:
    """PNG: one small panel per statistic, its value per run and its threshold dashed."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    names = sorted({name for run in history for name in run["statistics"]})
    columns = 3
    rows = max(1, -(-len(names) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(10, 2.2 * rows), squeeze=False)
    for axis in axes.flat[len(names) :]:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, names, strict=False):
        runs = [
            (i, run["statistics"][name])
            for i, run in enumerate(history)
            if name in run["statistics"]
        ]
        axis.plot([i for i, _ in runs], [s["value"] for _, s in runs], marker="o", label="value")
        axis.plot([i for i, _ in runs], [s["threshold"] for _, s in runs], "r--", label="threshold")
        drifted = [(i, s["value"]) for i, s in runs if s["drifted"]]
        if drifted:
            axis.scatter(*zip(*drifted, strict=True), color="red", zorder=3, label="drift")
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    if names:  # a run with no statistics (not enough data) has nothing to label
        axes.flat[0].legend(fontsize=7)
    figure.supxlabel(f"monitor run (last {len(history)})", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    plt.close(figure)
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def statistics_table(statistics: list[DriftStatistic]) -> list[str]:
    lines = [
        "| statistic | method | value | threshold | p-value | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.name} | {s.method} | {_cell(s.value)} | {_cell(s.threshold)} | "
        f"{_cell(s.p_value)} | {'**DRIFT**' if s.drifted else 'ok'} |"
        for s in statistics
    ]
    return lines


def shares_table(statistics: list[DriftStatistic]) -> list[str]:
    lines = []
    for s in statistics:
        if not s.shares:
            continue
        lines += [
            "",
            f"**{s.name}** shares",
            "",
            "| class | reference | current |",
            "|---|---|---|",
        ]
        lines += [
            f"| {label} | {share['reference']:.3f} | {share['current']:.3f} |"
            for label, share in sorted(s.shares.items(), key=lambda kv: -kv[1]["current"])
        ]
    return lines


def markdown(report: dict[str, Any], statistics: list[DriftStatistic], chart_png: bytes) -> str:
    """The artifact: verdict, alert decision, statistics, class shares, trend chart."""
    chart = base64.b64encode(chart_png).decode()
    lines = [
        f"## Drift monitor: **{report['verdict']}**",
        "",
        *[f"- {message}" for message in report["messages"]],
        f"- alert: {report['alert']['reason']}",
        f"- window: {report['window']['records']} records in the last "
        f"{report['window']['hours']} h; reference: {report['reference']['records']} records "
        f"({report['reference']['source']})",
        "",
        *statistics_table(statistics),
        *shares_table(statistics),
        "",
        f"![drift statistics against thresholds over recent runs](data:image/png;base64,{chart})",
    ]
    return "\n".join(lines)
