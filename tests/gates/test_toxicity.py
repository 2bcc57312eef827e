"""The toxicity classifier's Arrow path gives alt-profanity-check's own probabilities, on texts
of every kind the suites meet: Bitext-style and synthetic support logs, insults, unicode,
punctuation inside words, empty texts."""

from __future__ import annotations

import numpy as np
import pytest
from profanity_check.profanity_check import model, vectorizer

import tasks.gates.toxicity
from tasks.gates.toxicity import profane_probability
from tests.helpers import batches, synthetic_logs

ODD_TEXTS = [
    "",
    "FUCK you",
    "naïve café, shit_head!",
    "dumb-ass\tidiot\nmoron",
    "ß STRASSE Ärger über 42 Pakete",
    "stupid2 x_y 1st 2nd",
    "\uff26\uff35\uff23\uff2b (full-width letters)",
    "you are an idiot 😡😡",
    "a",
]


def texts_of(records: list[dict]) -> list[str]:
    return [m["text"] for r in records for m in r["messages"]]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    offensive = batches.with_offensive_agents(batches.clean_batch(300), 0.1)
    unseen = synthetic_logs.make_logs(300, seed=4, formal_replies=True, longer_messages=True)
    return texts_of(offensive) + texts_of(unseen) + ODD_TEXTS


def library_probability(texts: list[str]) -> np.ndarray:
    return model.predict_proba(vectorizer.transform(texts))[:, list(model.classes_).index(1)]


def test_same_probabilities_as_the_library_across_chunks(texts, monkeypatch):
    monkeypatch.setattr(tasks.gates.toxicity, "CHUNK_TEXTS", 97)  # many chunks, in threads
    probability = profane_probability(texts)
    np.testing.assert_allclose(probability, library_probability(texts), rtol=0, atol=1e-12)
    flagged = {text for text, p in zip(texts, probability, strict=True) if p >= 0.5}
    assert {"FUCK you", "dumb-ass\tidiot\nmoron"} <= flagged
    assert "ß STRASSE Ärger über 42 Pakete" not in flagged
    assert sum(p >= 0.5 for p in probability) < len(texts) / 5


def test_a_vectorizer_it_does_not_reproduce_uses_the_library_transform(texts, monkeypatch):
    tasks.gates.toxicity._classifier.cache_clear()
    monkeypatch.setitem(tasks.gates.toxicity.VECTORIZER_SETTINGS, "ngram_range", (1, 2))
    try:
        assert tasks.gates.toxicity._classifier()[2] is None
        np.testing.assert_array_equal(profane_probability(texts), library_probability(texts))
    finally:
        tasks.gates.toxicity._classifier.cache_clear()


def test_no_texts():
    assert profane_probability([]).shape == (0,)
