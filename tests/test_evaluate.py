"""Evaluation on a real (tiny) model with the real tokenizer: what is scored, and invariances."""

from __future__ import annotations

import pytest

from tasks.evaluate import IGNORE, ModelRef, encode_example, load_model, score_examples


def example(i: int, category: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful customer-support assistant."},
            {"role": "user", "content": f"where is my order {i}?"},
            {"role": "assistant", "content": f"Your order {i} ships tomorrow."},
        ],
        "metadata": {"category": category},
    }


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(ModelRef(label="tiny", base_model_dir=str(tiny_model_dir)))


def test_only_the_answer_tokens_are_scored(tiny):
    _, tokenizer = tiny
    ids, labels = encode_example(tokenizer, example(1, "ORDER")["messages"], max_length=512)
    scored = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(scored).startswith("Your order 1 ships tomorrow.")
    assert "where is my order" not in tokenizer.decode(scored)


def test_scores_do_not_depend_on_batching_or_padding(tiny):
    model, tokenizer = tiny
    examples = [example(i, "ORDER" if i % 2 else "REFUND") for i in (1, 22, 333, 4444, 55555)]
    one_by_one, _ = score_examples(model, tokenizer, examples, batch_size=1, max_length=128)
    batched, _ = score_examples(model, tokenizer, examples, batch_size=5, max_length=128)
    assert batched.tokens == one_by_one.tokens
    assert batched.loss == pytest.approx(one_by_one.loss, rel=1e-4)


def test_slices_partition_the_examples(tiny):
    model, tokenizer = tiny
    examples = [example(i, "ORDER" if i % 3 else "REFUND") for i in range(9)]
    overall, slices = score_examples(model, tokenizer, examples, batch_size=4, max_length=128)
    assert set(slices) == {"ORDER", "REFUND"}
    assert sum(s.examples for s in slices.values()) == overall.examples == 9
    assert sum(s.tokens for s in slices.values()) == overall.tokens
    assert overall.loss > 5  # a random model over a 49k vocabulary is near ln(49152) ≈ 10.8
