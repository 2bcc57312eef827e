"""Personal-data redaction at ingest, before any record is written anywhere.

Microsoft Presidio finds the data: its recognizers for e-mail, phone (through `phonenumbers`, so
international formats), payment card (Luhn), IBAN (checksum), IP address and US SSN, plus person
names from a spaCy English pipeline (`pii.spacy_model`). Each finding becomes a typed placeholder
(`<EMAIL>`, `<PERSON>`...). Two things are never redacted: Bitext's own template placeholders
(`{{Order Number}}`) and the organisation's contact details in `pii.allow_list`.

The analyzer is built once per process (`get_redactor`): importing Presidio (which imports
transformers) and loading spaCy take seconds. Where the time goes (bench/data_gates.py
redaction --profile): spaCy's NER is most of it, so it runs only where it can matter:

- each distinct text is analysed once (support replies repeat templates a lot);
- NER runs only on texts with a capital letter other than the pronoun "I": a person name is
  kept only when every word of it is capitalised (`_is_product_term`), so on the other texts
  NER could only find spans that are dropped anyway (the tokens, and so Presidio's context
  words, are the same without it);
- each pattern recognizer skips texts it cannot match (`_gated`: no `@`, too few digits);
- only the spaCy components NER needs are loaded (the small English NER has its own tok2vec),
  texts go through `nlp.pipe` in batches;
- a large batch (`pii.min_texts_per_process` distinct texts per worker) is analysed in
  `pii.processes` worker processes, in chunks (tasks/ingest/processes.py): when no text repeats, NER
  on every capitalised text is three quarters of the time, and one process uses one core.

Measured on tests/data/pii_labelled.jsonl (bench/data_gates.py pii), on top of Presidio:
Mastercard's 2-series and Diners' 36 prefix are cards; a person name keeps apostrophes and
particles ("Sarah O'Brien", "Pieter de Vries") and holds no digit; digits glued to a code
("INV-040032") are no phone number; a name after a salutation, sign-off or introduction is a
person even where spaCy's small model says organisation (`_name_cue_recognizer`).

    python -c "from tasks.ingest.pii import get_redactor; from tasks.config import PiiSettings; \\
        print(get_redactor(PiiSettings()).redact_text('Hi, I am Jane Doe, jane@doe.org'))"
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from typing import Any

from tasks.config import PiiSettings
from tasks.ingest.processes import chunked, map_in_processes

# Presidio entity → the placeholder put in its place.
PLACEHOLDERS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "PERSON": "PERSON",
}
TEMPLATE_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
# spaCy components the small English NER does not need: skipping them roughly halves the time.
UNUSED_SPACY_COMPONENTS = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer")
# Contract fields that hold codes or ids, not free text: every other string is redacted,
# unknown extra fields included (a `customer_email` field must not carry an address along).
STRUCTURAL_FIELDS = frozenset(
    {"conversation_id", "timestamp", "channel", "language", "intent", "category", "segments"}
)
PIPE_BATCH_SIZE = 256
# What a redaction worker's spaCy pipeline and recognizers do without (`_modules_missing`);
# a transformer pipeline (`en_core_web_trf`) needs them and gets them.
WORKER_UNUSED_MODULES = ("transformers", "torch")
# Distinct texts a worker process analyses per call: small enough that both workers finish at
# about the same time, large enough that sending texts and findings back is noise.
PROCESS_CHUNK_TEXTS = 500
# Issuer prefixes of the card networks (Visa, Mastercard, Amex, Diners, Discover, JCB, UnionPay):
# measured on the Bitext sample, Presidio's Luhn check alone takes 15-digit order numbers such as
# 113542617735902 for cards.
CARD_ISSUER = re.compile(r"(?:4|5[1-5]|2[2-7]|3[04-9]|6)")
# Mastercard's 2-series (2221-2720, issued since 2017), which Presidio's card pattern lacks:
# measured on tests/data/pii_labelled.jsonl, every such card went through.
MASTERCARD_2_SERIES = r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b"
QUOTES = "'\"\u2018\u2019\u201c\u201d`"
NUMBER_AFTER_PERIOD = re.compile(r"\.\s*[+(\d]")
# Words that introduce a person's name (salutations, sign-offs, introductions) or follow it.
NAME_CUES_BEFORE = ("dear", "hi", "hello", "hey", "thanks", "thank you", "regards", "cheers")
NAME_CUES_BEFORE += ("sincerely", "my name is", "this is", "on behalf of", "attn")
NAME_CUES_AFTER = ("here", "speaking")
NAME_CUE_SCORE = 0.6
# Lower-case words inside a personal name ("Pieter de Vries", "Ahmad bin Said").
NAME_PARTICLES = frozenset(
    {"de", "del", "della", "der", "den", "di", "da", "du", "dos", "das", "van", "von", "la", "le"}
    | {"bin", "al", "el"}
)
PRONOUN_I = re.compile(r"\bI\b")


def _offline_tldextract() -> None:
    """Presidio's e-mail recognizer validates domains with tldextract, whose default extractor
    downloads the public-suffix list on first use. Use the snapshot bundled in the wheel."""
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _digit_count(text: str) -> int:
    return sum(map(str.isdigit, text))


def _gated(recognizer_class: type, can_match: Callable[[str], bool], **kwargs: Any) -> Any:
    """A recognizer that skips texts its patterns cannot match (no `@` for an e-mail, too few
    digits for a card): most support messages hold neither, and each pattern recognizer
    otherwise runs all its regexes on every text."""

    class Gated(recognizer_class):
        def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list:
            if not can_match(text):
                return []
            return super().analyze(text, entities, nlp_artifacts)

    Gated.__name__ = Gated.__qualname__ = recognizer_class.__name__  # its name in results
    return Gated(**kwargs)


def _card_recognizer():
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    class IssuerCheckedCardRecognizer(CreditCardRecognizer):
        def validate_result(self, pattern_text: str) -> bool | None:
            if not CARD_ISSUER.match(_digits(pattern_text)):
                return False
            return super().validate_result(pattern_text)

    patterns = [
        *CreditCardRecognizer.PATTERNS,
        Pattern("mastercard 2-series", MASTERCARD_2_SERIES, 0.3),
    ]
    # Presidio's card patterns hold at least 13 digits
    return _gated(
        IssuerCheckedCardRecognizer, lambda text: _digit_count(text) >= 13, patterns=patterns
    )


def _phone_recognizer(regions: list[str]):
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class DigitGatedPhoneRecognizer(PhoneRecognizer):
        """phonenumbers scans a text once per region: skip texts that cannot hold a number
        (fewer than 7 digits), which are most support messages. A fifth of the time, measured."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list:
            if _digit_count(text) < 7:
                return []
            return super().analyze(text, entities, nlp_artifacts)

    return DigitGatedPhoneRecognizer(supported_regions=regions)


def _is_code(text: str, start: int, end: int) -> bool:
    """Measured on tests/data/pii_labelled.jsonl: `phonenumbers` takes the digits of invoice
    numbers for phone numbers ("INV-040032", "INV-2026-000123"). Digits glued to a word by a
    hyphen or slash are part of a code, and fewer than 7 digits are no subscriber's number."""
    glued = start >= 2 and text[start - 1] in "-/" and text[start - 2].isalnum()
    return glued or _digit_count(text[start:end]) < 7


def _is_name_word(word: str) -> bool:
    return word[:1].isupper() and not any(c.isdigit() for c in word)


def _is_product_term(text: str, start: int, end: int) -> bool:
    """spaCy tags quoted UI labels ('Cancel Order', 'Order History'), slang ('wanna') and codes
    (a tracking number, 'Postcode SW1A') as people: a name is capitalised word by word (bar
    particles such as "de" in "Pieter de Vries"), holds no digit and is not quoted (an
    apostrophe inside a word, as in O'Brien, is no quote)."""
    span = text[start:end]
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    words = span.split()
    quoted = any(word[:1] in QUOTES or word[-1:] in QUOTES for word in words) or bool(
        before and before in QUOTES and after in QUOTES
    )
    name_shaped = any(map(_is_name_word, words)) and all(
        _is_name_word(word) or word in NAME_PARTICLES for word in words
    )
    return quoted or not name_shaped


def _is_number_label(text: str, start: int, end: int) -> bool:
    """spaCy tags the abbreviation in "Tel. +49 30 …" as a person (all 9 false positives on
    tests/data/pii_labelled.jsonl): one word right before a period and a number is a label."""
    return " " not in text[start:end].strip() and NUMBER_AFTER_PERIOD.match(text, end) is not None


def _international_phone_recognizer():
    """Measured: `phonenumbers` rejects numbers it holds invalid for their region (the UK's
    +44 7700 900xxx range, new ranges its metadata does not know yet) and Presidio then lets
    them through. A `+<country code>` number with 8-15 digits is personal data either way."""
    from presidio_analyzer import Pattern, PatternRecognizer

    pattern = Pattern(
        "international", r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,6}\)?){2,5}(?![\w])", 0.6
    )
    return _gated(
        PatternRecognizer,
        lambda text: "+" in text,
        supported_entity="PHONE_NUMBER",
        patterns=[pattern],
        name="InternationalPhoneRecognizer",
    )


def _name_cue_pattern() -> Any:
    """A person's name (two or three capitalised words, particles allowed) right after a
    salutation, sign-off or self-introduction, or right before "here"/"speaking"."""
    import regex

    word = r"\p{Lu}[\p{L}\p{M}]*(?:['\u2019-]\p{L}[\p{L}\p{M}]*)*"
    particle = "|".join(sorted(NAME_PARTICLES))
    name = rf"{word}(?:[ \t]+(?:(?:{particle})[ \t]+)?{word}){{1,2}}"
    before = r"(?i:\b(?:" + "|".join(NAME_CUES_BEFORE) + r"))[,:]?\s+"
    after = r"(?=,?[ \t]+(?i:" + "|".join(NAME_CUES_AFTER) + r")\b)"
    return regex.compile(rf"{before}(?P<name>{name})|(?<![\p{{L}}'])(?P<name>{name}){after}")


def _name_cue_recognizer():
    """Measured on tests/data/pii_labelled.jsonl: spaCy's small English model labels many
    names it has not met as organisations or places ("Dear Kenji Watanabe" ORG, "Regards,
    Amara Okafor" GPE, "on behalf of Pieter de Vries" ORG), or finds nothing. Where the words
    around say a person is named (a salutation, a sign-off, "my name is", "on behalf of",
    "... here"), a name-shaped span is a person whatever spaCy thinks."""
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    pattern = _name_cue_pattern()

    class NameCueRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list:
            if "PERSON" not in entities:
                return []
            return [
                RecognizerResult("PERSON", m.start("name"), m.end("name"), NAME_CUE_SCORE)
                for m in pattern.finditer(text)
            ]

    return NameCueRecognizer(supported_entities=["PERSON"], name="NameCueRecognizer")


def may_hold_name(text: str) -> bool:
    """Whether NER can find a person name in `text` that `Redactor` keeps: one needs a capital
    letter that is not the pronoun "I" (a name kept is capitalised word by word)."""
    rest = PRONOUN_I.sub("", text)
    return rest != rest.lower()


def _name_gated_engine(nlp: Any, model_name: str):
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class NameGatedSpacyNlpEngine(SpacyNlpEngine):
        """Presidio's spaCy engine, running the pipeline (NER) only on texts that
        `may_hold_name`; the others are only tokenised."""

        def process_batch(self, texts, language, batch_size=1, n_process=1, as_tuples=False):
            if as_tuples:
                yield from super().process_batch(texts, language, batch_size, n_process, as_tuples)
                return
            texts = [str(text) for text in texts]
            needs_ner = [may_hold_name(text) for text in texts]
            pipeline = self.nlp[language]
            ner_docs = pipeline.pipe(
                (text for text, need in zip(texts, needs_ner, strict=True) if need),
                batch_size=batch_size,
                n_process=n_process,
            )
            for text, need in zip(texts, needs_ner, strict=True):
                doc = next(ner_docs) if need else pipeline.make_doc(text)
                yield text, self._doc_to_nlp_artifact(doc, language)

    engine = NameGatedSpacyNlpEngine(models=[{"lang_code": "en", "model_name": model_name}])
    engine.nlp = {"en": nlp}
    return engine


class Redactor:
    """Presidio analyzer + anonymizer configured from `PiiSettings`."""

    def __init__(self, config: PiiSettings) -> None:
        import spacy
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
        from presidio_analyzer import predefined_recognizers as rec
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig

        _offline_tldextract()
        # Presidio warns once per text for every spaCy label it does not map (ORDINAL, DATE…):
        # thousands of lines per run that a user cannot act on
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        self.config = config
        nlp = spacy.load(config.spacy_model, exclude=UNUSED_SPACY_COMPONENTS)
        nlp_engine = _name_gated_engine(nlp, config.spacy_model)
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in (
            # each gate is a condition every match of the recognizer's patterns meets
            _gated(rec.EmailRecognizer, lambda text: "@" in text),
            _phone_recognizer(config.phone_regions),
            _international_phone_recognizer(),
            _card_recognizer(),
            _gated(rec.IbanRecognizer, lambda text: _digit_count(text) >= 2),
            _gated(rec.IpRecognizer, lambda text: ":" in text or _digit_count(text) >= 4),
            _gated(rec.UsSsnRecognizer, lambda text: _digit_count(text) >= 9),
            rec.SpacyRecognizer(supported_entities=["PERSON"]),
            _name_cue_recognizer(),
        ):
            registry.add_recognizer(recognizer)
        analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=["en"]
        )
        self.batch = BatchAnalyzerEngine(analyzer_engine=analyzer)
        self.anonymizer = AnonymizerEngine()
        self.operators = {
            entity: OperatorConfig(
                "replace", {"new_value": f"<{PLACEHOLDERS.get(entity, entity)}>"}
            )
            for entity in config.entities
        }
        self.allowed_text = {a.strip().lower() for a in config.allow_list}
        self.allowed_digits = {_digits(a) for a in config.allow_list if len(_digits(a)) >= 7}

    def _allowed(self, found: str, entity: str) -> bool:
        """On the allow list; a phone number also when written with or without a country code
        or trunk prefix (at most 3 digits more or fewer). Only a phone number: an IP address
        or card whose digits end like the organisation's number is still personal data."""
        if found.strip().lower() in self.allowed_text:
            return True
        digits = _digits(found)
        return (
            entity == "PHONE_NUMBER"
            and len(digits) >= 7
            and any(
                (digits.endswith(a) or a.endswith(digits)) and abs(len(digits) - len(a)) <= 3
                for a in self.allowed_digits
            )
        )

    def _keep(self, text: str, results: list) -> list:
        """Drop findings inside a `{{template placeholder}}`, on the allow list, product terms
        and number labels taken for names and codes taken for phone numbers."""
        templates = [m.span() for m in TEMPLATE_PLACEHOLDER.finditer(text)]
        return [
            r
            for r in results
            if not any(start < r.end and r.start < end for start, end in templates)
            and not self._allowed(text[r.start : r.end], r.entity_type)
            and not (
                r.entity_type == "PERSON"
                and (
                    _is_product_term(text, r.start, r.end) or _is_number_label(text, r.start, r.end)
                )
            )
            and not (r.entity_type == "PHONE_NUMBER" and _is_code(text, r.start, r.end))
        ]

    def analyze(self, texts: list[str]) -> list[list]:
        """Presidio findings per text, after the template and allow-list filters. Each
        distinct text is analysed once; a large batch in `pii.processes` worker processes."""
        unique = list(dict.fromkeys(texts))
        processes = self.config.processes
        if processes > 1 and len(unique) >= processes * self.config.min_texts_per_process:
            config_json = self.config.model_dump_json()
            chunks = [(config_json, chunk) for chunk in chunked(unique, PROCESS_CHUNK_TEXTS)]
            found = chain.from_iterable(map_in_processes(_analyze_in_worker, chunks, processes))
        else:
            found = self.analyze_here(unique)
        kept = dict(zip(unique, found, strict=True))
        return [kept[text] for text in texts]

    def analyze_here(self, unique: list[str]) -> list[list]:
        """`analyze` of distinct texts, in this process."""
        found = self.batch.analyze_iterator(
            unique,
            language="en",
            batch_size=PIPE_BATCH_SIZE,
            entities=self.config.entities,
            score_threshold=self.config.score_threshold,
        )
        return [self._keep(text, results) for text, results in zip(unique, found, strict=True)]

    def _replace(self, text: str, results: list) -> tuple[str, list[str]]:
        """The redacted text and the placeholder types put in."""
        if not results:
            return text, []
        anonymized = self.anonymizer.anonymize(
            text=text, analyzer_results=results, operators=self.operators
        )
        return anonymized.text, [
            PLACEHOLDERS.get(i.entity_type, i.entity_type) for i in anonymized.items
        ]

    def redact_texts(self, texts: list[str], counts: Counter[str] | None = None) -> list[str]:
        """Texts with their personal data replaced; `counts` gets one count per placeholder
        put in (repeated texts count each time)."""
        counts = Counter() if counts is None else counts
        replaced: dict[str, tuple[str, list[str]]] = {}
        redacted = []
        for text, results in zip(texts, self.analyze(texts), strict=True):
            if text not in replaced:
                replaced[text] = self._replace(text, results)
            clean, placeholders = replaced[text]
            counts.update(placeholders)
            redacted.append(clean)
        return redacted

    def redact_text(self, text: str, counts: Counter[str] | None = None) -> str:
        return self.redact_texts([text], counts)[0]

    def redact_records(
        self, records: list[dict[str, Any]], counts: Counter[str]
    ) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
        """Yield (redacted record, None) or (None, reason) per record, in order.

        All texts go through the analyzer in one batch; if the batch fails, records are
        retried one by one so the one that breaks it is quarantined and the rest go on.
        """
        slots = [list(_text_slots(r)) for r in records]
        texts = [text for record_slots in slots for _, text in record_slots]
        try:
            redacted = iter(self.redact_texts(texts, counts))
        except Exception:
            yield from self._one_by_one(records, counts)
            return
        for record, record_slots in zip(records, slots, strict=True):
            yield _fill(record, [(path, next(redacted)) for path, _ in record_slots]), None

    def _one_by_one(
        self, records: list[dict[str, Any]], counts: Counter[str]
    ) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
        for record in records:
            record_slots = list(_text_slots(record))
            record_counts: Counter[str] = Counter()
            try:
                texts = self.redact_texts([t for _, t in record_slots], record_counts)
            except Exception as error:
                yield None, f"redaction failed: {type(error).__name__}"
                continue
            counts.update(record_counts)
            yield (
                _fill(record, [(p, t) for (p, _), t in zip(record_slots, texts, strict=True)]),
                None,
            )


Path = tuple[str | int, ...]


def _text_slots(record: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """Every free-text string of a record with its path: message texts, then extra fields."""
    for i, message in enumerate(record.get("messages", [])):
        for key, value in message.items():
            if key != "role":
                yield from _strings(value, ("messages", i, key))
    for key, value in record.items():
        if key not in STRUCTURAL_FIELDS and key not in ("messages", "_source"):
            yield from _strings(value, (key,))


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))


def _fill(record: dict[str, Any], replacements: list[tuple[Path, str]]) -> dict[str, Any]:
    """A deep copy of the record's containers with the given strings replaced."""
    import copy

    filled = copy.deepcopy(record)
    for path, text in replacements:
        target = filled
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = text
    return filled


def _analyze_in_worker(job: tuple[str, list[str]]) -> list[list]:
    """A worker process's share of `Redactor.analyze`: its redactor loads on its first chunk."""
    config_json, texts = job
    transformer_pipeline = "trf" in PiiSettings.model_validate_json(config_json).spacy_model
    with _modules_missing(() if transformer_pipeline else WORKER_UNUSED_MODULES):
        redactor = _cached_redactor(config_json)
    return redactor.analyze_here(texts)


@contextmanager
def _modules_missing(names: tuple[str, ...]) -> Iterator[None]:
    """Imports of `names` fail as if they were not installed, while the block runs (modules
    already imported are left alone).

    Why, in a redaction worker: Presidio imports transformers (for its optional transformers
    engine, and through the spaCy factory it registers) and thinc imports torch, both only if
    installed; the small spaCy pipeline and the pattern recognizers need neither. Measured: a
    worker's redactor loads in 2.8 s instead of 10.7 s, with the same findings."""
    import sys

    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  (the import system's "missing")
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


@lru_cache(maxsize=2)
def _cached_redactor(config_json: str) -> Redactor:
    return Redactor(PiiSettings.model_validate_json(config_json))


def get_redactor(config: PiiSettings) -> Redactor:
    """The process-wide redactor for this configuration (spaCy loads once)."""
    return _cached_redactor(config.model_dump_json())
