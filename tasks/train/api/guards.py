"""What must hold before anything is sent to a fine-tuning provider.

- Only redacted data leaves: the dataset manifest must say its records came out of the
  redaction stage, and a second, independent detector (the PII suite's patterns with their
  checksums, tasks/gates/pii_check.py) must find no personal data in the files about to be uploaded.
- The provider still accepts new jobs: each provider (and base model) has a configured
  cut-off date; within `cutoff_warning_days` of it every run warns, after it a run is refused
  or, with `fallback_backend: local`, rerouted to the local backend.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel

from tasks.config import ApiSettings, Settings
from tasks.gates.pii_check import count_leaks


class NotRedacted(RuntimeError):
    """The dataset did not come out of the redaction stage, or still holds personal data."""


class ProviderCutoff(RuntimeError):
    """The provider no longer accepts new fine-tuning jobs."""


class BackendChoice(BaseModel):
    """Which backend a run uses, and what the summary must say about it."""

    backend: Literal["local", "api"]
    notes: list[str]


# --- redaction ----------------------------------------------------------------------------


def require_redacted(manifest: dict[str, Any], dataset_version: str) -> None:
    """Refuse a dataset whose manifest does not record the redaction stage."""
    redaction = manifest.get("redaction") or {}
    if redaction.get("applied") is not True:
        raise NotRedacted(
            f"dataset {dataset_version}: its manifest has no `redaction.applied: true`, so it may "
            "hold personal data and is not sent to a provider. Rebuild it with `retrain run` "
            "(the prepare stage reads only redacted records), or use `training.backend: local`"
        )


def find_pii(texts: list[str], allow_list: Iterable[str] = ()) -> Counter[str]:
    """Count personal-data findings per kind (never the text itself), with the detector of the
    PII suite (tasks/gates/pii_check.py): independent of the redactor that should have removed
    them."""
    import pandas as pd

    leaks = count_leaks(pd.Series(texts, dtype="object"), allow_list).sum()
    return Counter({kind.removeprefix("pii_"): int(n) for kind, n in leaks.items() if n})


def message_texts(examples: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for e in examples for m in e["messages"] if m["role"] != "system"]


def require_no_pii(examples: list[dict[str, Any]], what: str, allow_list: Iterable[str]) -> None:
    """Refuse to send texts that still hold personal data; `allow_list`: the organisation's own
    contact details (`pii.allow_list`), which stay in replies on purpose."""
    found = find_pii(message_texts(examples), allow_list)
    if found:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(found.items()))
        raise NotRedacted(
            f"{what}: the pre-upload PII check found {kinds}; nothing was uploaded. Fix the "
            "redaction stage (tasks/ingest/pii.py) so these are replaced, then run again"
        )


# --- provider cut-off ---------------------------------------------------------------------


def cutoff_date(api: ApiSettings) -> date | None:
    provider = api.providers.get(api.provider)
    if provider is None:
        raise ValueError(
            f"`training.api.provider` is {api.provider!r}, not one of "
            f"{sorted(api.providers)}: add it under `training.api.providers`"
        )
    dates = [
        d for d in (provider.new_jobs_stop_on, provider.base_model_cutoffs.get(api.model)) if d
    ]
    return min(dates) if dates else None


def choose_backend(settings: Settings, today: date | None = None) -> BackendChoice:
    """The backend this run uses: `api` unless the provider's cut-off says otherwise."""
    if settings.training.backend != "api":
        return BackendChoice(backend="local", notes=[])
    api = settings.training.api
    today = today or datetime.now(UTC).date()
    stop = cutoff_date(api)
    if stop is None:
        return BackendChoice(backend="api", notes=[])
    where = f"provider {api.provider!r} (model {api.model})"
    if today >= stop:
        alternatives = [name for name in api.providers if name != api.provider]
        message = (
            f"{where} accepts no new fine-tuning jobs since {stop.isoformat()}. Point "
            f"`training.api.provider` at another OpenAI-compatible provider "
            f"({', '.join(alternatives) or 'add one under training.api.providers'}), set "
            "`training.backend: local`, or set `training.api.fallback_backend: local`"
        )
        if api.fallback_backend == "local":
            return BackendChoice(
                backend="local", notes=[f"rerouted to the local backend: {message}"]
            )
        raise ProviderCutoff(message)
    days_left = (stop - today).days
    if days_left <= api.cutoff_warning_days:
        return BackendChoice(
            backend="api",
            notes=[
                f"{where} stops accepting new fine-tuning jobs on {stop.isoformat()} "
                f"({days_left} days left): move to another provider or the local backend"
            ],
        )
    return BackendChoice(backend="api", notes=[])
