"""What the gate answers: each check's result, the batch's report, and its verdict.

`passed` when no block check fails; `pending` when the batch has fewer than
`quality.min_records` records and no record-level check fails (the objects are carried into
the next run: shares on a few records are noise); else `rejected`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MIN_RECORDS_CHECK = "quality.min_records"
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
