"""Quality gate: redact personal data, then run the Great Expectations suite on the batch.

The suite lives in `expectations/<suite>.json`; it runs on a DataFrame of computed columns
(`to_frame`), because GX's row-condition expectations are SQL-only. A failed critical
expectation, or too many quarantined records, fails the gate; warnings are reported only.
Data Docs and a JSON summary go to `reports/<run-id>/`.

    python -c "import json; print(json.load(open('expectations/support_logs.json'))['name'])"
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from pydantic import BaseModel

from tasks.config import Settings
from tasks.pii import redact_record
from tasks.s3 import get_jsonl, put_json, put_jsonl, s3_client, upload_dir

EXPECTATIONS_DIR = Path(__file__).resolve().parents[1] / "expectations"

# PII must never be copied into reports: GX would otherwise list matching values.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}


class CheckResult(BaseModel):
    name: str
    column: str | None
    success: bool
    severity: str
    observed: str


class QualityReport(BaseModel):
    passed: bool
    checks: list[CheckResult]
    failed_critical: list[str]
    pii_redactions: dict[str, int]
    redacted_key: str
    report_key: str
    data_docs_prefix: str


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per conversation, with the columns the suite checks."""

    def texts(record: dict[str, Any], role: str) -> str:
        return "\n".join(m["text"] for m in record["messages"] if m["role"] == role)

    rows = [
        {
            "conversation_id": r.get("conversation_id"),
            "timestamp": r.get("timestamp"),
            "channel": r.get("channel"),
            "language": r.get("language"),
            "category": r.get("category"),
            "customer_text": texts(r, "customer"),
            "agent_text": texts(r, "agent"),
            "customer_chars": len(texts(r, "customer")),
            "agent_chars": len(texts(r, "agent")),
            "is_offensive": float("offensive" in r.get("segments", [])),
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        return str(result["observed_value"])
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} of {result.get('element_count', '?')} unexpected"
    return ""


def run_suite(frame: pd.DataFrame, suite_name: str, parameters: dict[str, Any], docs_dir: Path):
    """Run the suite through a GX checkpoint that also renders Data Docs into docs_dir."""
    import great_expectations as gx

    suite_path = EXPECTATIONS_DIR / f"{suite_name}.json"
    if not suite_path.is_file():
        raise FileNotFoundError(
            f"`quality.suite` is {suite_name!r} but {suite_path} does not exist; "
            f"choose one of {sorted(p.stem for p in EXPECTATIONS_DIR.glob('*.json'))}"
        )
    context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    batch = (
        context.data_sources.add_pandas("support_logs")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole_batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(**json.loads(suite_path.read_text())))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}_gate",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format=RESULT_FORMAT,
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame}, expectation_parameters=parameters
    )
    (validation_result,) = result.run_results.values()
    checks = [
        CheckResult(
            name=r.expectation_config.type,
            column=r.expectation_config.kwargs.get("column"),
            success=r.success,
            severity=str(r.expectation_config.severity.value),
            observed=_observed(r.result),
        )
        for r in validation_result.results
    ]
    return checks, docs_dir / "gx" / "uncommitted" / "data_docs" / "local_site"


@task
def validate_batch(
    settings: Settings, staging_key: str, run_id: str, quarantined: int
) -> QualityReport:
    """Redact PII, run the suite, write the redacted batch and the report. Never raises on a
    failed gate: the flow decides what a failure means."""
    s3 = settings.s3
    client = s3_client(s3)
    redactions: Counter[str] = Counter()
    records = [redact_record(r, redactions) for r in get_jsonl(client, s3.bucket, staging_key)]
    redacted_key = f"{s3.staging_prefix}{run_id}/redacted.jsonl"
    put_jsonl(client, s3.bucket, redacted_key, records)

    parameters = {"min_records": settings.quality.min_records}
    with tempfile.TemporaryDirectory() as tmp:
        checks, docs_dir = run_suite(
            to_frame(records), settings.quality.suite, parameters, Path(tmp)
        )
        docs_prefix = f"{s3.reports_prefix}{run_id}/data-docs/"
        upload_dir(client, docs_dir, s3.bucket, docs_prefix)

    total = len(records) + quarantined
    quarantine_fraction = quarantined / total if total else 0.0
    limit = settings.quality.max_quarantine_fraction
    checks.append(
        CheckResult(
            name="quarantine_fraction_at_most",
            column=None,
            success=quarantine_fraction <= limit,
            severity="critical",
            observed=f"{quarantine_fraction:.3f} (limit {limit})",
        )
    )
    failed = [
        f"{c.name}({c.column})" if c.column else c.name
        for c in checks
        if not c.success and c.severity == "critical"
    ]
    if failed:  # the whole batch is held back: keep it where rejected records live
        client.copy_object(
            Bucket=s3.bucket,
            Key=f"{s3.quarantine_prefix}{run_id}/gate-rejected.jsonl",
            CopySource={"Bucket": s3.bucket, "Key": staging_key},
        )
    report = QualityReport(
        passed=not failed,
        checks=checks,
        failed_critical=failed,
        pii_redactions=dict(redactions),
        redacted_key=redacted_key,
        report_key=f"{s3.reports_prefix}{run_id}/quality.json",
        data_docs_prefix=docs_prefix,
    )
    put_json(client, s3.bucket, report.report_key, report.model_dump())
    return report
