"""The data gate: Great Expectations suites on an already-redacted batch.

Five suites live under `expectations/` (quality, pii, toxicity, representation, segments); every
expectation says in its `meta` whether a failure blocks training (`block`) or is reported
(`warn`), and reads its thresholds from `quality.*` in the config. GX's row-condition
expectations are SQL-only, so the suites run on computed columns built here with pandas:

- `conversation_frame`: one row per conversation (lengths, parsed timestamps, duplicate keys,
  leak counts from an independent PII detector, offensive flags from alt-profanity-check on
  each message);
- `mix_frame`: one row per intent / category with its share and its reference share;
- `segment_frame`: one row per customer segment compared with the rest.

Verdict (`verdict`): `passed` when no block check fails; `pending` when the batch has fewer than
`quality.min_records` records and no record-level check fails (the objects are carried into the
next run: shares on a few records are noise); else `rejected`. Only counts and check names leave
this module; GX runs with a result format that keeps no unexpected values, so Data Docs never
show a record.

    retrain check-data logs.jsonl --json      # the same gate on a local file
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import tempfile
from array import array
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import task
from pydantic import BaseModel, Field

from tasks.config import QualitySettings, Settings
from tasks.gates.pii_check import count_leaks
from tasks.gates.toxicity import profane_probability
from tasks.storage import layout
from tasks.storage.s3 import get_jsonl, list_objects, put_json, s3_client, upload_dir

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
# PII must never be copied into reports: GX would otherwise list matching values.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
MIN_RECORDS_CHECK = "quality.min_records"
# Which frame each suite validates.
SUITE_FRAMES = {
    "quality": "conversations",
    "pii": "conversations",
    "toxicity": "conversations",
    "representation": "mix",
    "segments": "segments",
}
Severity = Literal["block", "warn"]
Verdict = Literal["passed", "rejected", "pending"]


class CheckResult(BaseModel):
    name: str = Field(description="The check's name from its meta, e.g. `toxicity.agent_share`.")
    expectation: str = ""
    column: str | None = None
    success: bool
    result: Literal["pass", "fail", "skipped"] = "pass"
    severity: Severity
    record_level: bool = Field(
        False,
        description="Fails on particular records (a leaked value, a future timestamp), whatever "
        "the batch size; other checks judge shares, which need `quality.min_records` records.",
    )
    observed: str = ""
    unexpected: int | None = None
    description: str = ""

    def reason(self) -> str:
        """One readable line for a failure: what was checked, what was seen."""
        return f"{self.name}: {self.description} (observed {self.observed})"


class QualityReport(BaseModel):
    passed: bool
    verdict: Verdict = "passed"
    checks: list[CheckResult]
    failed_critical: list[str] = Field(description="Names of the failed block checks.")
    failed_counts: dict[str, int | None] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    pii_redactions: dict[str, int] = Field(default_factory=dict)
    redacted_key: str = ""
    report_key: str = ""
    data_docs_prefix: str = ""
    data_docs_url: str = Field("", description="Data Docs index: s3:// URI or endpoint URL.")
    bias: dict[str, Any] = Field(default_factory=dict, description="Mix and segment tables.")

    def failed_summary(self) -> list[str]:
        """One readable line per failed block check."""
        return [c.reason() for c in self.checks if c.result == "fail" and c.severity == "block"]


# ---------------------------------------------------------------- computed columns


ROLES = ("customer", "agent")


@dataclasses.dataclass
class SideTexts:
    """One side's texts: joined per conversation, and on their own where a conversation has
    several messages on this side (toxicity: one insult among long, polite replies is diluted
    below the threshold when they are classified as one text)."""

    joined: pd.Series  # one text per conversation, its messages joined by newlines
    split: list[str]  # each message of the conversations with several on this side
    split_rows: array  # each of those messages' frame row, as int64 (Python ints are 36 B)


def _side_texts(records: list[dict[str, Any]]) -> dict[str, SideTexts]:
    """Per role, its texts in every conversation, joined by newlines and one by one."""
    joined: dict[str, list[str]] = {role: [] for role in ROLES}
    split: dict[str, list[str]] = {role: [] for role in ROLES}
    split_rows = {role: array("q") for role in ROLES}
    for row, record in enumerate(records):
        said: dict[str, list[str]] = {role: [] for role in ROLES}
        for message in record.get("messages", ()):
            texts = said.get(message.get("role"))
            if texts is not None:
                texts.append(message.get("text", ""))
        for role, texts in said.items():
            joined[role].append("\n".join(texts))
            if len(texts) > 1:
                split[role] += texts
                split_rows[role].extend([row] * len(texts))
    # the joined Python strings are dropped once in Arrow: ~1 GB on a million 3-turn records
    return {
        role: SideTexts(pd.Series(joined.pop(role), dtype="str"), split[role], split_rows[role])
        for role in ROLES
    }


FRAME_FIELDS = ("conversation_id", "timestamp", "channel", "language", "intent", "category")
FRAME_FIELDS += ("resolved", "csat")


def conversation_frame(
    records: Iterable[dict[str, Any]],
    config: QualitySettings | None = None,
    allow_list: Iterable[str] = (),
) -> pd.DataFrame:
    """One row per conversation with the columns the suites check. Texts are used to compute
    columns and then dropped, so a million-record frame stays small. Built column by column
    (one pass over the records per field): a million records take about a second."""
    config = config or QualitySettings()
    records = records if isinstance(records, list) else list(records)
    columns = {
        name: pd.Series([r.get(name) for r in records], dtype="object") for name in FRAME_FIELDS
    }
    columns["segments"] = pd.Series([r.get("segments") or [] for r in records], dtype="object")
    sides = _side_texts(records)
    frame = pd.DataFrame(columns)
    del columns
    customer, agent = sides["customer"].joined, sides["agent"].joined
    frame["customer_chars"] = customer.str.len().astype("int64")
    frame["agent_chars"] = agent.str.len().astype("int64")
    parsed = pd.to_datetime(frame.pop("timestamp"), errors="coerce", utc=True, format="ISO8601")
    frame["timestamp_epoch"] = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    frame["content_key"] = pd.util.hash_pandas_object(customer + "\0" + agent, index=False)
    frame["resolved"] = pd.to_numeric(frame["resolved"], errors="coerce").astype("float64")
    frame["csat"] = pd.to_numeric(frame["csat"], errors="coerce").astype("float64")
    allow_list = list(allow_list)
    # per side: replies repeat more than whole conversations, and each distinct text is
    # checked once
    leaks = count_leaks(customer, allow_list) + count_leaks(agent, allow_list)
    frame = pd.concat([frame, leaks], axis=1)
    for role, side_texts in sides.items():
        frame[f"{role}_offensive"] = _offensive(side_texts, config)
    return frame


def _offensive(side: SideTexts, config: QualitySettings) -> np.ndarray:
    """1.0 for each conversation where the classifier flags one of this side's messages. Each
    distinct text is classified once: support replies repeat templates a lot."""
    split_rows = np.asarray(side.split_rows)
    whole = np.ones(len(side.joined), dtype=bool)  # at most one message: the joined text is it
    whole[split_rows] = False
    # the texts stay in the Arrow buffers pandas holds them in: a list of a million Python
    # strings per side is ~0.8 GB more at the peak (measured)
    texts = pd.concat([side.joined[whole], pd.Series(side.split, dtype="str")], ignore_index=True)
    rows = np.concatenate([np.flatnonzero(whole), split_rows])
    codes, distinct = pd.factorize(texts)
    flagged = (profane_probability(distinct) >= config.offensive_probability)[codes]
    return (np.bincount(rows[flagged], minlength=len(side.joined)) > 0).astype("float64")


def share_of(values: pd.Series) -> pd.Series:
    return values.dropna().value_counts(normalize=True)


def js_divergence(batch: pd.Series, reference: pd.Series) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two category mixes."""
    from scipy.spatial.distance import jensenshannon

    labels = sorted(set(batch.index) | set(reference.index))
    p = batch.reindex(labels, fill_value=0).to_numpy()
    q = reference.reindex(labels, fill_value=0).to_numpy()
    return float(jensenshannon(p, q, base=2) ** 2)


def mix_frame(frame: pd.DataFrame, reference: pd.Series | None) -> pd.DataFrame:
    """One row per intent and per category: its share, and against the reference category
    mix its reference share and the batch's Jensen-Shannon divergence."""
    rows = []
    for field in ("intent", "category"):
        for value, share in share_of(frame[field]).items():
            rows.append({"field": field, "value": str(value), f"{field}_share": share})
    mix = pd.DataFrame(rows, columns=["field", "value", "intent_share", "category_share"])
    mix["reference_share"] = np.nan
    mix["reference_category_share"] = np.nan
    mix["js_divergence"] = np.nan
    categories = share_of(frame["category"])
    if reference is None or reference.empty or categories.empty:
        return mix
    batch_size = int(frame["category"].notna().sum())
    for value, ref_share in reference.items():
        is_row = (mix["field"] == "category") & (mix["value"] == str(value))
        if not is_row.any():
            mix = pd.concat(
                [
                    mix,
                    pd.DataFrame(
                        [{"field": "category", "value": str(value), "category_share": 0.0}]
                    ),
                ],
                ignore_index=True,
            )
            is_row = (mix["field"] == "category") & (mix["value"] == str(value))
        mix.loc[is_row, "reference_share"] = ref_share
        # gated only where the batch is big enough to expect 5 of them: absence is then news
        if ref_share * batch_size >= 5:
            mix.loc[is_row, "reference_category_share"] = mix.loc[is_row, "category_share"]
    mix["js_divergence"] = js_divergence(categories, reference)
    return mix


def segment_frame(frame: pd.DataFrame, config: QualitySettings) -> pd.DataFrame:
    """Each customer segment vs the rest of the batch: reply length ratio, resolution-rate and
    CSAT gaps. Gaps need enough labelled conversations on both sides, else they stay empty."""
    columns = ["segment", "conversations", "reply_length_ratio", "resolution_gap", "csat_gap"]
    exploded = frame[["segments"]].explode("segments").dropna()
    minimum = config.segment_min_conversations
    rows = []
    for segment, members in exploded.groupby("segments").groups.items():
        inside = frame.index.isin(members)
        if inside.sum() < minimum or (~inside).sum() < minimum:
            continue
        mean_in = frame.loc[inside, "agent_chars"].mean()
        mean_out = frame.loc[~inside, "agent_chars"].mean()
        rows.append(
            {
                "segment": str(segment),
                "conversations": int(inside.sum()),
                "reply_length_ratio": mean_in / mean_out if mean_out else np.nan,
                "resolution_gap": _gap(frame["resolved"], inside, minimum),
                "csat_gap": _gap(frame["csat"], inside, minimum),
            }
        )
    return pd.DataFrame(rows, columns=columns).astype(
        {c: "float64" for c in columns[2:]}, errors="ignore"
    )


def _gap(values: pd.Series, inside: np.ndarray, minimum: int) -> float:
    a, b = values[inside].dropna(), values[~inside].dropna()
    if len(a) < minimum or len(b) < minimum:
        return np.nan
    return abs(float(a.mean()) - float(b.mean()))


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


# ---------------------------------------------------------------- running the suites


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


def quarantine_check(accepted: int, quarantined: int, limit: float) -> CheckResult:
    total = accepted + quarantined
    fraction = quarantined / total if total else 0.0
    return CheckResult(
        name="ingest.quarantine_fraction",
        column=None,
        success=fraction <= limit,
        result="pass" if fraction <= limit else "fail",
        severity="block",
        observed=f"{fraction:.3f} ({quarantined} of {total} records)",
        unexpected=quarantined,
        description=f"at most a {limit} share of the batch's records may break the contract",
    )


def verdict(checks: list[CheckResult]) -> Verdict:
    """`passed` when no block check fails. A batch below `quality.min_records` is `pending`
    (its objects wait for more) unless a record-level check fails too: shares on a handful of
    records are noise (one insult in ten replies is 10 %), but a leaked e-mail or a timestamp
    in the future stays wrong however much data comes, and a pending batch would carry it into
    the next one. Otherwise any block failure is `rejected`."""
    failed = [c for c in checks if c.result == "fail" and c.severity == "block"]
    if not failed:
        return "passed"
    too_small = any(c.name == MIN_RECORDS_CHECK for c in failed)
    if too_small and not any(c.record_level for c in failed):
        return "pending"
    return "rejected"


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


def reference_mix(rows: Iterable[dict[str, Any]]) -> pd.Series | None:
    """Category mix of support-log records or of chat examples with metadata (the golden set)."""
    categories = [r.get("category") or (r.get("metadata") or {}).get("category") for r in rows]
    series = share_of(pd.Series([c for c in categories if c], dtype="object"))
    return series if not series.empty else None


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
