"""The run summary: what one retrain run read, checked, trained, measured and decided.

It is what `retrain run --json` prints and what the final Prefect artifact shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from tasks.evaluate.aggregate import SliceMetrics  # a field type: needed at run time
from tasks.storage import layout

if TYPE_CHECKING:  # parameter types only: the summary is read without the pipeline's libraries
    from tasks.evaluate.aggregate import Comparison
    from tasks.gates.verdict import QualityReport
    from tasks.ingest.objects import IngestResult, ObjectRef
    from tasks.prepare.dataset import DatasetRef
    from tasks.promote.policy import Decision
    from tasks.train.result import TrainResult

Outcome = Literal[
    "no_new_data", "data_pending", "data_rejected", "waiting_for_golden", "promoted", "not_promoted"
]


class RunSummary(BaseModel):
    run_id: str
    model_name: str
    bucket: str
    decision: Outcome = "no_new_data"
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="Warnings the operator must see (provider cut-off)."
    )
    objects: int = 0
    records_read: int = 0
    records_curated: int = 0
    records_quarantined: int = 0
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: list[str] = Field(default_factory=list)
    pii_redactions: dict[str, int] = Field(default_factory=dict)
    quality_report: str | None = None
    dataset_version: str | None = None
    dataset_counts: dict[str, int] = Field(default_factory=dict)
    train_steps: int | None = None
    train_loss: float | None = None
    train_seconds: float | None = None
    train_examples_seen: int | None = None
    train_window_examples: int | None = None
    train_fraction_seen: float | None = None
    train_dataset_versions: list[str] = Field(default_factory=list)
    metrics: dict[str, dict[str, SliceMetrics]] = Field(
        default_factory=dict, description="eval set → incumbent / challenger → overall metrics"
    )
    model_version: str | None = None
    model_uri: str | None = None

    def with_notes(self, notes: list[str]) -> RunSummary:
        return self.model_copy(update={"notes": [*self.notes, *notes]})

    def with_ingest(self, objects: list[ObjectRef], ingested: IngestResult) -> RunSummary:
        return self.model_copy(
            update={
                "objects": len(objects),
                "records_read": ingested.records_read,
                "records_quarantined": ingested.quarantined,
                "quarantine_reasons": ingested.quarantine_reasons,
            }
        )

    def with_quality(self, quality: QualityReport) -> RunSummary:
        update: dict = {
            "checks_passed": sum(c.success for c in quality.checks),
            "checks_failed": [c.name for c in quality.checks if not c.success],
            "pii_redactions": quality.pii_redactions,
            "quality_report": layout.s3_uri(self.bucket, quality.report_key),
        }
        if quality.verdict == "pending":  # nothing is held back: the objects are read again
            update["reasons"] = [
                f"too few records for the gate: {r}" for r in quality.failed_summary()
            ]
        elif not quality.passed:
            # the whole batch is held back: count it as quarantined so nothing goes missing
            update["records_quarantined"] = self.records_read
            update["quarantine_reasons"] = {
                **self.quarantine_reasons,
                "batch failed quality gate": self.records_read - self.records_quarantined,
            }
            update["reasons"] = [f"quality gate failed: {', '.join(quality.failed_critical)}"]
        return self.model_copy(update=update)

    def with_dataset(self, dataset: DatasetRef) -> RunSummary:
        reasons = dict(self.quarantine_reasons)
        for name in ("duplicate", "golden_leak"):
            if dataset.counts.get(name):
                reasons[name] = dataset.counts[name]
        return self.model_copy(
            update={
                "dataset_version": dataset.version,
                "dataset_counts": dataset.counts,
                "records_curated": dataset.curated,
                "records_quarantined": self.records_quarantined + dataset.quarantined,
                "quarantine_reasons": reasons,
            }
        )

    def with_training(self, trained: TrainResult) -> RunSummary:
        return self.model_copy(
            update={
                "train_steps": trained.steps,
                "train_loss": trained.train_loss,
                "train_seconds": trained.seconds,
                "train_examples_seen": trained.examples_seen,
                "train_window_examples": trained.train_examples,
                "train_fraction_seen": trained.fraction_seen,
                "train_dataset_versions": trained.dataset_versions,
            }
        )

    def with_decision(
        self,
        decision: Decision,
        version: str,
        model_uri: str,
        comparisons: dict[str, Comparison],
    ) -> RunSummary:
        return self.model_copy(
            update={
                "decision": "promoted" if decision.promote else "not_promoted",
                "reasons": decision.reasons,
                "model_version": version,
                "model_uri": model_uri,
                "metrics": {
                    name: {
                        "incumbent": pair.incumbent.overall,
                        "challenger": pair.challenger.overall,
                    }
                    for name, pair in comparisons.items()
                },
            }
        )
