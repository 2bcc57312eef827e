"""Evaluation on a real (tiny) model with the real tokenizer: what is scored, and invariances."""

from __future__ import annotations

import pytest

from tasks.config import EvaluationSettings
from tasks.evaluate.aggregate import GOLDEN, ModelRef, aggregate, build_report, load_model
from tasks.evaluate.scoring import (
    IGNORE,
    LocalModel,
    encode_example,
    generate_ids,
    score_examples,
    teacher_forced,
)

CONFIG = EvaluationSettings(
    batch_size=4, generation_batch_size=4, max_length=128, max_new_tokens=6, sample_size=2
)


def example(i: int, category: str, answer: str | None = None, intent: str = "track_order") -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful customer-support assistant."},
            {"role": "user", "content": f"where is my order {i}?" + " please" * (i % 4)},
            {"role": "assistant", "content": answer or f"Your order {i} ships tomorrow."},
        ],
        "metadata": {
            "conversation_id": f"c-{i}",
            "category": category,
            "intent": intent,
            "segments": ["polite"] if i % 2 else ["colloquial", "typos"],
        },
    }


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(ModelRef(label="tiny", base_model_dir=str(tiny_model_dir)))


def test_only_the_answer_tokens_are_scored(tiny):
    ids, labels = encode_example(tiny.tokenizer, example(1, "ORDER")["messages"], max_length=512)
    scored = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE]
    assert tiny.tokenizer.decode(scored).startswith("Your order 1 ships tomorrow.")
    assert "where is my order" not in tiny.tokenizer.decode(scored)


def test_a_long_prompt_is_cut_from_the_left_and_the_answer_kept_whole(tiny):
    answer = "First, open Orders. " * 12 + "Then press Cancel and confirm."
    messages = example(2, "ORDER", answer=answer)["messages"]
    messages[1]["content"] = "my story: " + "blah " * 300 + "so where is my order?"
    ids, labels = encode_example(tiny.tokenizer, messages, max_length=160)
    assert len(ids) == 160
    scored = tiny.tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    assert scored.startswith(answer) and "so where is my order" in tiny.tokenizer.decode(ids)


@pytest.fixture(scope="module")
def talkative(tiny_model_dir):
    """The tiny model with large random weights: its greedy replies differ from prompt to prompt
    (the freshly initialised one answers every prompt with newlines)."""
    import torch

    local = load_model(ModelRef(label="talkative", base_model_dir=str(tiny_model_dir)))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in local.model.parameters():
            parameter.normal_(0, 0.3)
    return LocalModel(model=local.model, tokenizer=local.tokenizer)


def test_batched_greedy_generation_matches_one_at_a_time(talkative):
    conversations = [example(i, "ORDER")["messages"] for i in (1, 22, 333, 4444, 7)]
    batched = generate_ids(talkative, conversations, 5, max_new_tokens=6, max_length=128)
    single = generate_ids(talkative, conversations, 1, max_new_tokens=6, max_length=128)
    assert batched == single
    assert len({tuple(ids) for ids in batched}) > 1  # replies really depend on the prompt


def test_teacher_forced_loss_is_the_models_own_loss_on_the_answer(talkative):
    """Only answer positions reach the head, in length-sorted batches: the numbers must still be
    the model's own cross-entropy over the answer, per example, in input order."""
    import torch

    examples = [example(i, "ORDER", answer="Sure. " * (i % 5 + 1)) for i in (4444, 1, 333, 22)]
    rows = teacher_forced(talkative, examples, batch_size=3, max_length=128)
    for item, (nll, _, tokens) in zip(examples, rows, strict=True):
        ids, labels = encode_example(talkative.tokenizer, item["messages"], max_length=128)
        with torch.no_grad():
            own = talkative.model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        assert tokens == sum(label != IGNORE for label in labels)
        assert nll / tokens == pytest.approx(own.loss.item(), rel=1e-4)


def test_scores_do_not_depend_on_batching_or_padding(tiny):
    examples = [example(i, "ORDER" if i % 2 else "REFUND") for i in (1, 22, 333, 4444, 55555)]
    one = score_examples(tiny, examples, CONFIG.model_copy(update={"batch_size": 1}))
    five = score_examples(tiny, examples, CONFIG.model_copy(update={"batch_size": 5}))
    assert [r.answer_tokens for r in one] == [r.answer_tokens for r in five]
    assert [r.loss for r in five] == pytest.approx([r.loss for r in one], rel=1e-4)
    assert aggregate(five).loss > 5  # random model over a 49k vocabulary: near ln(49152)


def test_slices_cover_category_intent_and_segment(tiny):
    examples = [example(i, "ORDER" if i % 3 else "REFUND") for i in range(9)]
    rows = score_examples(tiny, examples, CONFIG)
    report = build_report(ModelRef(label="tiny"), GOLDEN, rows, examples, sample_size=2)
    assert {"category:ORDER", "category:REFUND", "intent:track_order"} <= set(report.slices)
    assert {"segment:polite", "segment:colloquial", "segment:typos"} <= set(report.slices)
    categories = [s for n, s in report.slices.items() if n.startswith("category:")]
    assert sum(s.examples for s in categories) == report.overall.examples == 9
    assert sum(s.tokens for s in categories) == report.overall.tokens
    assert len(report.sample) == 2 and all(
        s["reply"] == rows[int(s["id"][2:])].reply for s in report.sample
    )


def test_an_api_style_generator_gets_generation_and_safety_metrics():
    examples = [example(i, "ORDER") for i in range(4)]
    references = {e["messages"][1]["content"]: e["messages"][2]["content"] for e in examples}

    def echo_reference(prompts):  # a perfect "model": answers with the reference reply
        return [references[p[-1]["content"]] for p in prompts]

    def careless(prompts):  # invents a person's contact details and swears
        return ["Call Jennifer Lawrence on 212-555-0199, you stupid idiot"] * len(prompts)

    perfect = score_examples(echo_reference, examples, CONFIG)
    bad = score_examples(careless, examples, CONFIG)
    assert all(r.loss is None and r.answer_tokens is None for r in perfect)
    assert all(r.similarity > 0.99 and r.rouge_l == pytest.approx(1.0) for r in perfect)
    assert all(r.new_pii == 0 and r.offensive == 0 for r in perfect)
    assert all(r.similarity < 0.5 and r.new_pii == 1 and r.offensive == 1 for r in bad)
    assert "212-555-0199" not in bad[0].reply and "Jennifer" not in bad[0].reply


def test_the_offensive_reply_judge_reads_its_bar_from_evaluation_settings():
    from tasks.gates.toxicity import profane_probability

    examples = [example(i, "ORDER") for i in range(2)]
    reply = "Sorry, that was a damn mess on our side; your refund is on its way."
    (probability,) = profane_probability([reply])
    assert 0 < probability < 1

    def scorer(prompts):
        return [reply] * len(prompts)

    def flagged(bar: float) -> list[float]:
        config = CONFIG.model_copy(update={"offensive_probability": bar})
        return [row.offensive for row in score_examples(scorer, examples, config)]

    assert flagged(probability / 2) == [1.0, 1.0]
    assert flagged(min(probability * 2, 0.999)) == [0.0, 0.0]


def test_pii_the_customer_gave_is_not_counted_as_new():
    examples = [example(1, "ORDER")]
    examples[0]["messages"][1]["content"] = "I am Jennifer Lawrence, jen@example.org, order 7?"
    rows = score_examples(
        lambda prompts: ["Thanks Jennifer Lawrence, we wrote to jen@example.org."],
        examples,
        CONFIG,
    )
    assert rows[0].new_pii == 0.0


def test_classify_scores_accuracy_and_macro_f1_on_intent_labels():
    from sklearn.metrics import f1_score

    intents = ["track_order", "cancel_order", "get_refund", "track_order"]
    examples = [example(i, "ORDER", intent=intent) for i, intent in enumerate(intents)]
    answers = ["Track order", "cancel_order", "track_order", "track order."]
    rows = score_examples(
        lambda prompts: answers, examples, CONFIG.model_copy(update={"task_type": "classify"})
    )
    assert [r.correct for r in rows] == [1.0, 1.0, 0.0, 1.0]
    metrics = aggregate(rows)
    assert metrics.accuracy == 0.75
    expected = f1_score(
        intents, ["track_order", "cancel_order", "track_order", "track_order"], average="macro"
    )
    assert metrics.macro_f1 == pytest.approx(expected, abs=1e-4)
