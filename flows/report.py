"""Prefect artifacts, one per stage, so a run reads in the UI without its logs.

Only counts, check names, metrics and S3 locations go here: never record text, which may hold
personal data.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.summary import RunSummary
from tasks.dataset import DatasetRef
from tasks.evaluate import Comparison
from tasks.ingest import IngestResult
from tasks.quality import QualityReport
from tasks.train_local import TrainResult


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


def quality(report: QualityReport) -> None:
    rows = [
        {
            "check": c.name,
            "column": c.column or "",
            "severity": c.severity,
            "result": "pass" if c.success else "FAIL",
            "observed": c.observed,
        }
        for c in report.checks
    ]
    verdict = "passed" if report.passed else f"FAILED: {', '.join(report.failed_critical)}"
    create_table_artifact(
        rows,
        key="retrain-quality",
        description=f"2 validate: quality gate {verdict}; PII redacted {report.pii_redactions}; "
        f"Data Docs under {report.data_docs_prefix}",
    )


def dataset(ref: DatasetRef) -> None:
    lines = [
        f"**Dataset {ref.version}** at `{ref.prefix}`",
        "",
        "| split | examples |",
        "|---|---|",
    ]
    lines += [f"| {name} | {count} |" for name, count in ref.counts.items()]
    create_markdown_artifact("\n".join(lines), key="retrain-dataset", description="3 prepare")


def training(result: TrainResult) -> None:
    curve = ", ".join(f"{loss:.3f}" for loss in result.loss_curve)
    markdown = (
        f"**{result.steps} steps** on {result.device} in {result.seconds:.0f} s, "
        f"{result.train_examples} training examples, base `{result.base_model}`\n\n"
        f"Mean train loss {result.train_loss:.4f}\n\nLoss per step: {curve}"
    )
    create_markdown_artifact(markdown, key="retrain-training", description="4 fine-tune")


def evaluation(comparisons: dict[str, Comparison]) -> None:
    rows = []
    for eval_set, pair in comparisons.items():
        before = pair.incumbent.by_slice()
        for name, after in pair.challenger.by_slice().items():
            old = before.get(name)
            rows.append(
                {
                    "set": eval_set,
                    "slice": name,
                    "examples": after.examples,
                    "incumbent loss": old.loss if old else None,
                    "challenger loss": after.loss,
                    "incumbent token acc": old.token_accuracy if old else None,
                    "challenger token acc": after.token_accuracy,
                }
            )
    models = next(iter(comparisons.values()))
    create_table_artifact(
        rows,
        key="retrain-evaluation",
        description=f"5 evaluate: {models.challenger.model} vs {models.incumbent.model}",
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
            f"{summary.train_seconds:.0f} s"
        )
    if summary.metrics:
        lines += [
            "",
            "| set | model | loss | perplexity | token accuracy |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {eval_set} | {model} | {m.loss:.4f} | {m.perplexity:.3f} | {m.token_accuracy:.3f} |"
            for eval_set, models in summary.metrics.items()
            for model, m in models.items()
        ]
    if summary.model_uri:
        lines += ["", f"- model version {summary.model_version}: {summary.model_uri}"]
    return "\n".join(lines)


def finish(summary: RunSummary) -> RunSummary:
    markdown = render(summary)
    get_run_logger().info("\n%s", markdown)
    create_markdown_artifact(markdown, key="retrain-summary", description="Run summary")
    return summary
