"""The toxicity classifier behind the toxicity suite: alt-profanity-check (a TF-IDF vectorizer
and a calibrated linear SVM trained on offensive texts; runs offline).

Its TF-IDF transform is fed by Arrow's compute kernels instead of the vectorizer's own Python
loop: scikit-learn tokenises and looks up each text in Python, over half of the suites' time on
a million distinct records (~23 of 41 CPU-s), while Arrow lower-cases, splits and looks up whole
arrays in C++ and releases the GIL, so chunks run on every core in threads. Same vocabulary, IDF
weights, L2 norm and model: the probabilities equal `vectorizer.transform`'s to float precision
(tests/gates/test_toxicity.py). This module imports nothing of the product.

    python -c "from tasks.gates.toxicity import profane_probability as p; print(p(['thanks',
    'idiot']))"
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

# scikit-learn's default token pattern `(?u)\b\w\w+\b` as a split: runs of anything but a
# letter, digit or underscore separate tokens; one-character tokens are never in the vocabulary
NOT_WORD = r"[^\p{L}\p{N}_]+"
# a few hundred milliseconds of work per chunk: enough chunks to keep every core busy
CHUNK_TEXTS = 50_000
# the vectorizer settings the Arrow tokenising reproduces
VECTORIZER_SETTINGS = {
    "analyzer": "word",
    "lowercase": True,
    "ngram_range": (1, 1),
    "norm": "l2",
    "preprocessor": None,
    "strip_accents": None,
    "sublinear_tf": False,
    "token_pattern": r"(?u)\b\w\w+\b",
    "tokenizer": None,
    "use_idf": True,
}


@cache
def _classifier() -> tuple[Any, Any, pa.Array | None]:
    """(model, vectorizer, its vocabulary as an Arrow array in column order, or None when the
    installed vectorizer's settings are not the ones reproduced here)."""
    from profanity_check.profanity_check import model, vectorizer

    settings = vectorizer.get_params()
    reproduced = all(settings.get(key) == value for key, value in VECTORIZER_SETTINGS.items())
    vocabulary = vectorizer.vocabulary_
    terms = pa.array(sorted(vocabulary, key=vocabulary.get)) if reproduced else None
    return model, vectorizer, terms


def term_counts(texts: pa.Array, terms: pa.Array) -> sp.csr_matrix:
    """Vocabulary term counts per text (rows) as the vectorizer counts them."""
    tokens = pc.split_pattern_regex(pc.utf8_lower(texts), pattern=NOT_WORD)
    columns = pc.index_in(pc.list_flatten(tokens), value_set=terms)
    known = pc.is_valid(columns)
    rows = pc.list_parent_indices(tokens).filter(known).to_numpy()
    columns = columns.filter(known).to_numpy()
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(texts), len(terms)))
    counts.sum_duplicates()
    return counts


def profane_probability(texts: Sequence[str] | pa.Array) -> np.ndarray:
    """alt-profanity-check's probability that each text is offensive (its `predict_prob`, which
    picks the profane column row by row in Python, is seconds slower on a million texts)."""
    if not len(texts):
        return np.zeros(0)
    from sklearn.preprocessing import normalize

    model, vectorizer, terms = _classifier()
    profane = list(model.classes_).index(1)
    if terms is None:  # a vectorizer this module does not reproduce: its own, slower transform
        return model.predict_proba(vectorizer.transform(list(texts)))[:, profane]
    texts = pa.array(texts, pa.large_string())
    chunks = [texts.slice(start, CHUNK_TEXTS) for start in range(0, len(texts), CHUNK_TEXTS)]
    with ThreadPoolExecutor(pa.cpu_count()) as pool:
        counts = sp.vstack(list(pool.map(term_counts, chunks, [terms] * len(chunks))))
    tfidf = normalize(counts @ sp.diags(vectorizer.idf_))
    return model.predict_proba(tfidf)[:, profane]
