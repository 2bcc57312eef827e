"""What the Prefect UI shows in the check and evaluation tables reads well: dates as dates, numbers
without exponents, and an evaluation table that fits a 1440 px window whatever the slice names
(the UI does not wrap table cells; widths measured in headless Chromium, deployments/ui_check.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from flows.reports.evaluation import SAFETY, SLICE_LABEL_CHARS, evaluation_rows, slice_label
from tasks.config import QualitySettings
from tasks.evaluate.aggregate import Comparison, EvalReport, SliceMetrics
from tasks.gates.suites import evaluate, format_observed
from tests.helpers import batches


def test_epoch_seconds_read_as_utc_dates_and_large_numbers_without_exponents():
    moment = datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
    assert format_observed(moment.timestamp(), "timestamp_epoch") == "2026-11-18 11:06:40 UTC"
    assert format_observed(np.float64(moment.timestamp()), "sent_epoch") == (
        "2026-11-18 11:06:40 UTC"
    )
    # the same number in a column that is not a time stays a number, without an exponent
    assert format_observed(moment.timestamp(), "agent_chars") == "1,795,000,000"
    assert format_observed(np.int64(1234567)) == "1,234,567"
    assert format_observed(123456.7) == "123,457"
    assert format_observed(0.0123456) == "0.01235"
    assert format_observed(3.14159) == "3.142"
    assert format_observed(float("nan"), "timestamp_epoch") == "nan"
    assert format_observed(True) == "True"
    assert format_observed(["chat", "email"]) == "['chat', 'email']"


def test_the_gate_reports_the_latest_timestamp_as_a_date_and_skips_in_few_words(tmp_path):
    rows = batches.clean_batch()
    latest = max(datetime.fromisoformat(r["timestamp"]) for r in rows)
    report = evaluate(rows, QualitySettings(), 0, None, tmp_path)
    check = next(c for c in report.checks if c.name == "quality.timestamp_not_in_future")
    assert check.observed == latest.strftime("%Y-%m-%d %H:%M:%S UTC")
    # no reference mix yet: the divergence check is skipped, saying why in a few words (the
    # column's name stands beside it in the table)
    skipped = next(c for c in report.checks if c.name == "representation.js_divergence")
    assert (skipped.result, skipped.observed) == ("skipped", "no values in this batch")


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:=-", max_size=90))
def test_slice_labels_are_bounded_and_keep_both_ends(name):
    label = slice_label(name)
    assert len(label) <= SLICE_LABEL_CHARS
    if len(name) <= SLICE_LABEL_CHARS:
        assert label == name
    else:
        head, tail = label.split("…")
        assert name.startswith(head) and name.endswith(tail) and len(head) >= len(tail) > 10


def test_evaluation_rows_fit_the_ui_with_long_slice_names():
    def metrics(loss: float, pii: float) -> SliceMetrics:
        return SliceMetrics(
            examples=40,
            loss=loss,
            token_accuracy=0.4,
            rouge_l=0.2,
            similarity=0.6,
            new_pii_rate=pii,
            offensive_rate=0.0,
        )

    long_intent = "intent:billing_dispute_escalation_to_a_supervisor_request"
    slices = {long_intent: metrics(10.81534, 0.125), "intent:get_invoice": metrics(2.5, 0.0)}

    def report(model: str, loss: float) -> EvalReport:
        return EvalReport(model=model, dataset="d", overall=metrics(loss, 0.0), slices=slices)

    rows = evaluation_rows(
        {"golden": Comparison(challenger=report("new", 2.0), incumbent=report("old", 2.2))}
    )
    assert [r["slice"] for r in rows] == [
        "overall",
        "intent:billing…visor_request",
        "intent:get_invoice",
    ]
    assert rows[0]["loss"] == "2.200 → 2.000"
    # the safety column shows the challenger's rates only: the gate compares both models
    assert rows[1][SAFETY] == "12%/0%"
    assert all(len(r["slice"]) <= SLICE_LABEL_CHARS for r in rows)
