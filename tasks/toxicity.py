"""The toxicity classifier behind the toxicity suite: alt-profanity-check (a TF-IDF vectorizer
and a calibrated linear SVM trained on offensive texts; runs offline).

Its own small module: worker processes (tasks/processes.py) import it to classify chunks, and
it imports nothing of the product but numpy, so a worker starts in the time it takes to load
scikit-learn and the model.

    python -c "from tasks.toxicity import profane_probability as p; print(p(['thanks', 'idiot']))"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def profane_probability(texts: Sequence[str]) -> np.ndarray:
    """alt-profanity-check's probability that each text is offensive. Its TF-IDF vectorizer
    and model are called directly: `predict_prob` picks the profane column row by row in
    Python (`np.apply_along_axis`), seconds on a million texts for the same numbers."""
    if not len(texts):
        return np.zeros(0)
    from profanity_check.profanity_check import model, vectorizer

    profane = list(model.classes_).index(1)
    return model.predict_proba(vectorizer.transform(list(texts)))[:, profane]
