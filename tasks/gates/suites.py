"""The data gate: Great Expectations suites on an already-redacted batch.

Five suites live under `expectations/` (quality, pii, toxicity, representation, segments); every
expectation says in its `meta` whether a failure blocks training (`block`) or is reported
(`warn`), and reads its thresholds from `quality.*` in the config. They run on the computed
columns of tasks/gates/frames.py; tasks/gates/verdict.py turns their results into the batch's
verdict. Only counts and check names leave the gate; GX runs with a result format that keeps
no unexpected values, so Data Docs never show a record.

    retrain check-data logs.jsonl --json      # the same gate on a local file
"""

from __future__ import annotations

import json
import math
import numbers
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from tasks.config import QualitySettings, Settings
from tasks.gates.frames import conversation_frame, mix_frame, reference_mix, segment_frame
from tasks.gates.verdict import (
    CheckResult,
    QualityReport,
    quarantine_check,
    verdict,
)
from tasks.storage import layout
from tasks.storage.s3 import get_jsonl, list_objects, put_json, s3_client, upload_dir

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"


# PII must never be copied into reports: GX would otherwise list matching values.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}


# Which frame each suite validates.
SUITE_FRAMES = {
    "quality": "conversations",
    "pii": "conversations",
    "toxicity": "conversations",
    "representation": "mix",
    "segments": "segments",
}


def parameters(config: QualitySettings, now: datetime | None = None) -> dict[str, Any]:
    """`$PARAMETER` values of the suites, all from `quality.*`."""
    now = now or datetime.now(UTC)
    return {
        "min_records": config.min_records,
        "max_records": config.max_records,
        "min_unique_fraction": 1 - config.max_duplicate_fraction,
        "languages": config.languages,
        "min_language_share": config.min_language_share,
        "known_channels": config.known_channels,
        "max_customer_chars": config.max_customer_chars,
        "max_agent_chars": config.max_agent_chars,
        "latest_timestamp": now.timestamp() + config.max_clock_skew_s,
        "max_offensive_agent_share": config.max_offensive_agent_share,
        "max_offensive_customer_share": config.max_offensive_customer_share,
        "max_intent_share": config.max_intent_share,
        "max_category_share": config.max_category_share,
        "min_reference_share": config.min_reference_share,
        "max_js_divergence": config.max_js_divergence,
        "min_reply_length_ratio": config.min_reply_length_ratio,
        "max_reply_length_ratio": 1 / config.min_reply_length_ratio,
        "max_resolution_gap": config.max_resolution_gap,
        "max_csat_gap": config.max_csat_gap,
    }


def load_suite(name: str) -> dict[str, Any]:
    path = EXPECTATIONS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"`quality.suites` names {name!r} but {path} does not exist; "
            f"choose from {sorted(p.stem for p in EXPECTATIONS_DIR.glob('*.json'))}"
        )
    return json.loads(path.read_text())


def format_observed(value: Any, column: str | None = None) -> str:
    """An observed value as a person reads it in the UI's check table: a `*_epoch` column's
    Unix seconds as a UTC date and time (not `1.795e+09`), large numbers with thousands
    separators instead of an exponent, small ones to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's too
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if column and column.endswith("_epoch"):
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, numbers.Integral) or abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _observed(result: dict[str, Any], column: str | None = None) -> str:
    if "observed_value" in result:
        return format_observed(result["observed_value"], column)
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} of {result.get('element_count', '?')} unexpected"
    return ""


def _not_applicable(frame: pd.DataFrame, expectation: dict[str, Any]) -> str | None:
    """Why an expectation cannot be evaluated on this frame, or None if it can (short: the UI's
    check table shows it beside the column's name and does not wrap cells)."""
    column = expectation["kwargs"].get("column")
    if expectation["type"].startswith("expect_table"):
        return None
    if frame.empty:
        return "no rows"
    if column and frame[column].isna().all() and "not_be_null" not in expectation["type"]:
        return "no values in this batch"
    return None


def _check(expectation: dict[str, Any], **fields: Any) -> CheckResult:
    meta = expectation.get("meta", {})
    return CheckResult(
        name=meta.get("check", expectation["type"]),
        expectation=expectation["type"],
        column=expectation["kwargs"].get("column"),
        severity=meta.get("severity", "block"),
        record_level=bool(meta.get("record_level", False)),
        description=meta.get("description", ""),
        **fields,
    )


def run_suite(
    context: Any, suite_name: str, frame: pd.DataFrame, params: dict[str, Any]
) -> list[CheckResult]:
    """Run one suite through a GX checkpoint on the columns it checks (GX hashes the whole
    batch it is given, and pickles it when a column holds lists). Data Docs are built once
    for all suites by `evaluate`."""
    import great_expectations as gx

    definition = load_suite(suite_name)
    checks, runnable = [], []
    for expectation in definition["expectations"]:
        why_not = _not_applicable(frame, expectation)
        if why_not:
            checks.append(_check(expectation, success=True, result="skipped", observed=why_not))
        else:
            runnable.append(expectation)
    if not runnable:
        return checks
    checked = frame[_columns_checked(runnable, frame)]
    batch = (
        context.data_sources.add_pandas(f"{suite_name}_source")
        .add_dataframe_asset(f"{suite_name}_frame")
        .add_batch_definition_whole_dataframe("whole_batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(**{**definition, "expectations": runnable}))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}_gate",
            validation_definitions=[validation],
            result_format=RESULT_FORMAT,
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": checked}, expectation_parameters=params)
    (validation_result,) = result.run_results.values()
    by_type_and_column = {(e["type"], json.dumps(e["kwargs"], sort_keys=True)): e for e in runnable}
    for r in validation_result.results:
        config = r.expectation_config
        raw_kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        expectation = by_type_and_column.get(
            (config.type, json.dumps(raw_kwargs, sort_keys=True, default=str)),
            {"type": config.type, "kwargs": raw_kwargs, "meta": config.meta or {}},
        )
        failed_to_run = (
            bool(r.exception_info.get("raised_exception")) if r.exception_info else False
        )
        column = expectation["kwargs"].get("column")
        observed = "could not be evaluated" if failed_to_run else _observed(r.result, column)
        if not r.success and not failed_to_run:
            observed += _offenders(frame, expectation["kwargs"], params)
        checks.append(
            _check(
                {**expectation, "meta": config.meta or expectation.get("meta", {})},
                success=bool(r.success),
                result="pass" if r.success else "fail",
                observed=observed,
                unexpected=r.result.get("unexpected_count"),
            )
        )
    return checks


def _columns_checked(expectations: list[dict[str, Any]], frame: pd.DataFrame) -> list[str]:
    """The frame's columns the expectations name (at least one, so a table-level expectation
    still sees every row)."""
    named = {e["kwargs"].get("column") for e in expectations}
    return [c for c in frame.columns if c in named] or list(frame.columns[:1])


def _offenders(frame: pd.DataFrame, kwargs: dict[str, Any], params: dict[str, Any]) -> str:
    """On the small label frames (mix, segments), name the rows out of bounds: labels and
    numbers only, never record text."""
    label = next((c for c in ("value", "segment") if c in frame.columns), None)
    column = kwargs.get("column")
    if label is None or column not in frame.columns:
        return ""

    def bound(name: str) -> float | None:
        value = kwargs.get(name)
        return params.get(value["$PARAMETER"]) if isinstance(value, dict) else value

    low, high = bound("min_value"), bound("max_value")
    values = frame[column]
    outside = values.notna() & (
        (values < low if low is not None else False)
        | (values > high if high is not None else False)
    )
    named = [f"{frame.at[i, label]}={values[i]:.3g}" for i in frame.index[outside][:5]]
    return f": {', '.join(named)}" if named else ""


def evaluate(
    records: list[dict[str, Any]],
    config: QualitySettings,
    quarantined: int,
    reference: pd.Series | None,
    docs_dir: Path,
    allow_list: Iterable[str] = (),
) -> QualityReport:
    """Every suite on one batch; Data Docs are rendered under docs_dir."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = conversation_frame(records, config, allow_list)
    frames = {
        "conversations": frame,
        "mix": mix_frame(frame, reference),
        "segments": segment_frame(frame, config),
    }
    params = parameters(config)
    context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    checks: list[CheckResult] = []
    for name in config.suites:
        checks += run_suite(context, name, frames[SUITE_FRAMES.get(name, "conversations")], params)
    context.build_data_docs()
    checks.append(quarantine_check(len(records), quarantined, config.max_quarantine_fraction))
    outcome = verdict(checks)
    failed = [c for c in checks if c.result == "fail" and c.severity == "block"]
    return QualityReport(
        passed=outcome == "passed",
        verdict=outcome,
        checks=checks,
        failed_critical=[c.name for c in failed],
        failed_counts={c.name: c.unexpected for c in failed},
        warnings=[c.reason() for c in checks if c.result == "fail" and c.severity == "warn"],
        bias=bias_tables(frames["mix"], frames["segments"]),
    )


def bias_tables(mix: pd.DataFrame, segments: pd.DataFrame) -> dict[str, Any]:
    """Small JSON-able tables for the bias report (values are labels and shares only)."""

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        clean = frame.astype(object).where(frame.notna(), None)
        return [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for row in clean.to_dict("records")
        ]

    return {"mix": records(mix), "segments": records(segments)}


def golden_reference(settings: Settings, client: Any) -> pd.Series | None:
    """The frozen golden set's category mix, or None before the first golden set exists."""
    key = layout.golden_data_key(settings.s3)
    if not any(o["Key"] == key for o in list_objects(client, settings.s3.bucket, key)):
        return None
    return reference_mix(get_jsonl(client, settings.s3.bucket, key))


@task
def validate_batch(
    settings: Settings,
    staging_key: str,
    run_id: str,
    quarantined: int,
    pii_redactions: dict[str, int] | None = None,
) -> QualityReport:
    """Run every suite on the redacted staging batch; write the report and Data Docs under
    `reports/<run-id>/`. Never raises on a failed gate: the flow decides what it means."""
    s3 = settings.s3
    client = s3_client(s3)
    records = get_jsonl(client, s3.bucket, staging_key)
    docs_prefix = layout.data_docs_prefix(s3, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate(
            records,
            settings.quality,
            quarantined,
            golden_reference(settings, client),
            Path(tmp),
            settings.pii.allow_list,
        )
        upload_dir(
            client,
            Path(tmp) / "gx" / "uncommitted" / "data_docs" / "local_site",
            s3.bucket,
            docs_prefix,
        )
    report = report.model_copy(
        update={
            "pii_redactions": pii_redactions or {},
            "redacted_key": staging_key,
            "report_key": layout.quality_report_key(s3, run_id),
            "data_docs_prefix": docs_prefix,
            "data_docs_url": layout.browser_url(s3, layout.data_docs_index_key(s3, run_id)),
        }
    )
    if report.verdict == "rejected":  # held back as the redacted staging copy
        client.copy_object(
            Bucket=s3.bucket,
            Key=layout.quarantine_key(s3, run_id, "gate-rejected"),
            CopySource={"Bucket": s3.bucket, "Key": staging_key},
        )
    put_json(client, s3.bucket, report.report_key, report.model_dump())
    return report
