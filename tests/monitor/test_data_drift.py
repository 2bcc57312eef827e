"""Data-drift statistics on synthetic support logs (not Bitext): a window that moved fires on the
statistics that describe the move; one drawn from the same distribution does not."""

from __future__ import annotations

import random

import pytest

from tasks.config import DriftSettings
from tasks.monitor.data_drift import compare_batches, mix_drift
from tests.helpers.synthetic_logs import make_logs

# Few conversations embedded per side keeps MiniLM's share of the test time small; the domain
# classifier's random-AUC threshold is what keeps it valid at this size.
CONFIG = DriftSettings(embedding_sample=60)


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return make_logs(240, seed=1)


def by_name(report):
    return {s.name: s for s in report.statistics}


def test_a_window_from_the_same_distribution_does_not_drift(reference):
    report = compare_batches(reference, make_logs(160, seed=2), CONFIG)
    assert report.enough_data
    assert report.drifted == [], report.statistics
    stats = by_name(report)
    assert set(stats) == {
        "category_mix",
        "intent_mix",
        "customer_length",
        "customer_oov_rate",
        "customer_embedding",
        "agent_length",
        "agent_oov_rate",
        "agent_embedding",
    }
    for s in stats.values():
        assert s.value < s.threshold or (s.p_value is not None and s.p_value >= CONFIG.alpha)


def test_new_product_other_reply_style_and_longer_texts_drift(reference):
    current = make_logs(160, seed=3, new_topic_share=0.3, formal_replies=True, longer_messages=True)
    stats = by_name(compare_batches(reference, current, CONFIG))
    assert all(s.drifted for s in stats.values()), [s for s in stats.values() if not s.drifted]
    # the report names the new category and its share, and the old ones shrinking
    shares = stats["category_mix"].shares
    assert shares["SOLAR"]["reference"] == 0 and shares["SOLAR"]["current"] > 0.2
    assert (
        stats["agent_length"].detail["current_median_words"]
        > 2 * (stats["agent_length"].detail["reference_median_words"])
    )


def test_each_move_fires_its_own_statistics_only(reference):
    formal = by_name(compare_batches(reference, make_logs(160, 4, formal_replies=True), CONFIG))
    assert {n for n, s in formal.items() if s.drifted} == {
        "agent_length",
        "agent_oov_rate",
        "agent_embedding",
    }
    typos = make_logs(160, 5)
    rng = random.Random(0)
    for record in typos:  # customers typing on a phone: letters dropped from every long word
        turn = record["messages"][0]
        turn["text"] = " ".join(
            w if len(w) < 4 else w[: (k := rng.randrange(1, len(w)))] + w[k + 1 :]
            for w in turn["text"].split()
        )
    typo = by_name(compare_batches(reference, typos, CONFIG, embeddings=False))
    assert typo["customer_oov_rate"].drifted
    assert not typo["category_mix"].drifted and not typo["agent_oov_rate"].drifted


def test_a_small_window_reports_not_enough_data(reference):
    report = compare_batches(reference, make_logs(40, seed=6), CONFIG)
    assert not report.enough_data and report.statistics == []
    assert "not enough data" in report.message and "`drift.min_records`" in report.message


def test_class_mix_noise_in_a_small_sample_does_not_fire():
    """Many classes and few records give a large Jensen-Shannon distance by chance alone; the
    chi-squared test (rare classes pooled) keeps that from being called drift."""
    rng = random.Random(1)
    classes = [f"intent_{i}" for i in range(25)]
    reference = [rng.choice(classes) for _ in range(2000)]
    current = [rng.choice(classes) for _ in range(100)]
    statistic = mix_drift("intent_mix", reference, current, DriftSettings())
    assert statistic.value > DriftSettings().max_js_distance  # the effect size alone would fire
    assert statistic.p_value > 0.01 and not statistic.drifted
    tripled = current + [c for c in current if c in classes[:3]] * 6
    assert mix_drift("intent_mix", reference, tripled, DriftSettings()).drifted
