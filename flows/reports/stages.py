"""Prefect artifacts, one per stage, so a run reads in the UI without its logs.

Only counts, check names, metrics and S3 locations go here: never record text, which may hold
personal data.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.reports import quality as quality_report
from flows.reports.summary import RunSummary
from tasks.config import QualitySettings
from tasks.gates.verdict import QualityReport
from tasks.ingest.objects import IngestResult
from tasks.prepare.dataset import DatasetRef
from tasks.train.report import loss_chart_markdown, summary_rows
from tasks.train.result import TrainResult

SPLITS = ("train", "validation", "golden", "heldout")


def ingest(result: IngestResult, objects: int) -> None:
    rows = [
        {"what": "objects read", "count": objects},
        {"what": "records read", "count": result.records_read},
        {"what": "accepted", "count": result.accepted},
        {"what": "quarantined", "count": result.quarantined},
    ] + [
        {"what": f"quarantined: {reason}", "count": n}
        for reason, n in result.quarantine_reasons.items()
    ]
    create_table_artifact(rows, key="retrain-ingest", description="1 ingest: records in and out")


def quality(report: QualityReport, config: QualitySettings | None = None) -> None:
    rows = [
        {
            "check": c.name,
            "column": c.column or "",
            "severity": c.severity,
            "result": "FAIL" if not c.success else c.result,  # pass, or skipped (not applicable)
            "observed": c.observed,
        }
        for c in report.checks
    ]
    verdict = "passed" if report.passed else f"FAILED: {', '.join(report.failed_critical)}"
    create_table_artifact(
        rows,
        key="retrain-quality",
        description=f"2 validate: quality gate {verdict}; "
        f"PII redacted: {_counts(report.pii_redactions)}",
    )
    quality_report.publish(report, config)  # bias findings and the Data Docs link


def dataset(ref: DatasetRef) -> None:
    lines = [
        f"**Dataset {ref.version}** at `{ref.prefix}`",
        "",
        "| split | examples |",
        "|---|---|",
    ]
    # the splits, and what was set aside, in two tables: one table read "duplicate" as a split
    splits = {n: c for n, c in ref.counts.items() if n in SPLITS}
    lines += [f"| {name} | {count} |" for name, count in splits.items()]
    dropped = {n: c for n, c in ref.counts.items() if n not in SPLITS}
    if dropped:
        lines += ["", "| set aside | records |", "|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {count} |" for name, count in dropped.items()]
    create_markdown_artifact(
        "\n".join(lines), key="retrain-dataset", description="3 prepare: chat-format dataset"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def training(result: TrainResult) -> None:
    # the UI does not wrap table cells: the batching reason goes in the (wrapped) description
    rows = [
        {**row, "value": result.batching} if row["what"] == "batching" else row
        for row in summary_rows(result)
    ]
    create_table_artifact(
        rows,
        key="retrain-training",
        description=f"4 fine-tune: {result.steps} steps, {result.fraction_seen:.1%} of the window; "
        f"batching: {result.batching_reason}",
    )
    create_markdown_artifact(
        f"**Loss curve** ({result.steps} steps on {result.device})\n\n"
        + loss_chart_markdown(result),
        key="retrain-training-curve",
        description="4 fine-tune: train and validation loss",
    )


def render(summary: RunSummary) -> str:
    """The summary as markdown (also what the CLI prints without --json)."""
    lines = [
        f"## Retrain run {summary.run_id}: **{summary.decision}**",
        *[f"- {reason}" for reason in summary.reasons],
        *[f"- **warning:** {note}" for note in summary.notes],
        "",
        f"- records in: {summary.records_read} from {summary.objects} objects; "
        f"curated {summary.records_curated}, quarantined {summary.records_quarantined}",
        *[
            f"  - {reason}: {count}"
            for reason, count in sorted(summary.quarantine_reasons.items(), key=lambda kv: -kv[1])
        ],
        f"- checks: {summary.checks_passed} passed, {len(summary.checks_failed)} failed "
        f"{', '.join(summary.checks_failed)}".rstrip(),
    ]
    if summary.train_steps is not None:
        lines.append(
            f"- training: {summary.train_steps} steps, mean loss {summary.train_loss:.4f}, "
            f"{summary.train_seconds:.0f} s; saw {summary.train_examples_seen} of "
            f"{summary.train_window_examples} examples in the window "
            f"({summary.train_fraction_seen:.1%}) from {len(summary.train_dataset_versions)} "
            "dataset version(s)"
        )
    if summary.metrics:
        lines += [
            "",
            "| set | model | loss | perplexity | token accuracy | ROUGE-L | similarity |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {eval_set} | {model} | "
            + " | ".join(
                "-" if v is None else f"{v:.4f}"
                for v in (m.loss, m.perplexity, m.token_accuracy, m.rouge_l, m.similarity)
            )
            + " |"
            for eval_set, models in summary.metrics.items()
            for model, m in models.items()
        ]
    if summary.model_uri:
        lines += ["", f"- model version {summary.model_version}: {summary.model_uri}"]
    return "\n".join(lines)


def finish(summary: RunSummary) -> RunSummary:
    # The whole summary is the artifact (and `retrain run`'s stdout); the log gets one line,
    # so a terminal running the CLI does not show it twice.
    create_markdown_artifact(render(summary), key="retrain-summary", description="Run summary")
    version = f", model version {summary.model_version}" if summary.model_version else ""
    get_run_logger().info(
        "run %s: %s%s (the retrain-summary artifact has the whole summary)",
        summary.run_id,
        summary.decision,
        version,
    )
    return summary
