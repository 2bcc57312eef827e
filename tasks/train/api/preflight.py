"""Pre-flight checks on chat-format fine-tuning files, run before anything is uploaded.

At least as strict as OpenAI's data-preparation guidance ("Data preparation and analysis for
chat model fine-tuning"): every format error is reported with its type and line number;
examples are counted in tokens with tiktoken for the target model's encoding; an example over
the training-context limit is an error (the provider would truncate it silently); the epochs
heuristic used when `n_epochs` is `auto`, billable tokens and the estimated cost follow, and
a configured budget stops a run that would exceed it.

    retrain preflight train.jsonl --validation validation.jsonl --model gpt-4o-mini-2024-07-18
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.config import ApiSettings
from tasks.train.api.tokens import encoding_for_model

ErrorType = Literal[
    "empty_file",
    "blank_line",
    "invalid_json",
    "data_type",
    "missing_messages_list",
    "message_not_object",
    "message_missing_key",
    "message_unrecognized_key",
    "unrecognized_role",
    "missing_content",
    "invalid_weight",
    "example_missing_assistant_message",
    "example_too_long",
    "too_few_examples",
]

ROLES = ("system", "user", "assistant", "tool", "function")
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call")
MIN_EXAMPLES = 10  # the fine-tuning API refuses a training file with fewer

# OpenAI's chat-format token accounting (the guide's num_tokens_from_messages)
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMER = 3

# The epochs heuristic of the guide: aim at ~3 epochs, more for tiny sets, fewer for huge ones.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


class FormatError(BaseModel):
    type: ErrorType
    line: int | None = Field(description="1-based line in the file; None for whole-file errors.")
    message: str


class Distribution(BaseModel):
    min: int
    max: int
    mean: float
    median: float
    p5: float
    p95: float

    @classmethod
    def of(cls, values: list[int]) -> Distribution | None:
        if not values:
            return None
        cuts = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else []
        return cls(
            min=min(values),
            max=max(values),
            mean=round(statistics.fmean(values), 2),
            median=statistics.median(values),
            p5=round(cuts[0], 2) if cuts else values[0],
            p95=round(cuts[-1], 2) if cuts else values[0],
        )


class FileCheck(BaseModel):
    """One file's verdict: errors by line, token statistics."""

    name: str
    examples: int
    errors: list[FormatError]
    error_counts: dict[str, int]
    messages_per_example: Distribution | None
    tokens_per_example: Distribution | None
    assistant_tokens_per_example: Distribution | None
    tokens: int = Field(description="Chat tokens of the well-formed examples.")

    @property
    def ok(self) -> bool:
        return not self.errors


class PreflightReport(BaseModel):
    model: str
    encoding: str
    context_limit: int
    train: FileCheck
    validation: FileCheck | None
    n_epochs: int
    epochs_from_heuristic: bool
    billable_tokens: int = Field(description="Training-file tokens billed per epoch.")
    trained_tokens: int = Field(description="billable_tokens * n_epochs.")
    price_per_million: float
    estimated_cost_usd: float
    budget_usd: float | None
    blockers: list[str]

    @property
    def fit(self) -> bool:
        return not self.blockers


def _message_errors(message: Any, line: int) -> list[FormatError]:
    if not isinstance(message, dict):
        return [
            FormatError(type="message_not_object", line=line, message="a message is not an object")
        ]
    errors = []
    for key in ("role", "content"):
        if key not in message and not (key == "content" and _calls_a_tool(message)):
            errors.append(
                FormatError(
                    type="message_missing_key", line=line, message=f"a message has no `{key}`"
                )
            )
    unknown = sorted(set(message) - set(MESSAGE_KEYS))
    if unknown:
        errors.append(
            FormatError(
                type="message_unrecognized_key",
                line=line,
                message=f"unknown message key(s) {unknown}; allowed: {list(MESSAGE_KEYS)}",
            )
        )
    role = message.get("role")
    if "role" in message and role not in ROLES:
        errors.append(
            FormatError(
                type="unrecognized_role",
                line=line,
                message=f"role {role!r} is not one of {list(ROLES)}",
            )
        )
    content = message.get("content")
    has_text = isinstance(content, str) and content.strip()
    if "content" in message and not _calls_a_tool(message) and not has_text:
        got = "empty text" if isinstance(content, str) else type(content).__name__
        errors.append(
            FormatError(
                type="missing_content",
                line=line,
                message=f"a {role or 'message'} message needs non-empty string content, got {got}",
            )
        )
    if "weight" in message and message["weight"] not in (0, 1):
        errors.append(
            FormatError(type="invalid_weight", line=line, message="`weight` must be 0 or 1")
        )
    return errors


def _calls_a_tool(message: dict[str, Any]) -> bool:
    return message.get("role") == "assistant" and bool(
        message.get("tool_calls") or message.get("function_call")
    )


def example_errors(example: Any, line: int) -> list[FormatError]:
    """Format errors of one parsed JSONL line, in OpenAI's categories."""
    if not isinstance(example, dict):
        return [
            FormatError(
                type="data_type",
                line=line,
                message=f"the line is a JSON {type(example).__name__}, not an object",
            )
        ]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [
            FormatError(
                type="missing_messages_list",
                line=line,
                message="the object needs a non-empty `messages` list",
            )
        ]
    errors = [error for message in messages for error in _message_errors(message, line)]
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        errors.append(
            FormatError(
                type="example_missing_assistant_message",
                line=line,
                message="no assistant message: nothing to learn from this example",
            )
        )
    return errors


def count_tokens(encoding: Any, messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(all chat tokens, assistant content tokens) the way OpenAI counts a chat example."""
    total, assistant = TOKENS_REPLY_PRIMER, 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "content", "name"):
            value = message.get(key)
            if isinstance(value, str):
                total += len(encoding.encode(value, disallowed_special=()))
        if "name" in message:
            total += TOKENS_PER_NAME
        if message.get("role") == "assistant" and isinstance(message.get("content"), str):
            assistant += len(encoding.encode(message["content"], disallowed_special=()))
    return total, assistant


def check_lines(
    name: str, lines: Iterable[str], encoding: Any, context_limit: int, min_examples: int = 0
) -> FileCheck:
    """Check a JSONL file's lines; `min_examples` > 0 also requires that many good examples."""
    errors: list[FormatError] = []
    n_messages, n_tokens, n_assistant = [], [], []
    examples = 0
    last_line = 0
    for last_line, text in enumerate(lines, start=1):
        if not text.strip():
            errors.append(
                FormatError(type="blank_line", line=last_line, message="blank line; remove it")
            )
            continue
        examples += 1
        try:
            example = json.loads(text)
        except json.JSONDecodeError as error:
            errors.append(
                FormatError(
                    type="invalid_json", line=last_line, message=f"not valid JSON: {error.msg}"
                )
            )
            continue
        found = example_errors(example, last_line)
        if found:
            errors += found
            continue
        tokens, assistant = count_tokens(encoding, example["messages"])
        if tokens > context_limit:
            errors.append(
                FormatError(
                    type="example_too_long",
                    line=last_line,
                    message=f"{tokens} tokens, over the {context_limit}-token training context "
                    "(`training.api.context_limit`): shorten or drop this example",
                )
            )
            continue
        n_messages.append(len(example["messages"]))
        n_tokens.append(tokens)
        n_assistant.append(assistant)
    if examples == 0:  # zero bytes or only blank lines: one clear error, not one per line
        what = "is empty" if last_line == 0 else f"has only blank lines ({last_line})"
        errors = [FormatError(type="empty_file", line=None, message=f"{name} {what}")]
    elif min_examples and examples < min_examples:
        errors.append(
            FormatError(
                type="too_few_examples",
                line=None,
                message=f"{examples} examples; fine-tuning needs at least {min_examples}",
            )
        )
    return FileCheck(
        name=name,
        examples=examples,
        errors=errors,
        error_counts=dict(Counter(e.type for e in errors)),
        messages_per_example=Distribution.of(n_messages),
        tokens_per_example=Distribution.of(n_tokens),
        assistant_tokens_per_example=Distribution.of(n_assistant),
        tokens=sum(n_tokens),
    )


def epochs_for(n_examples: int) -> int:
    """The guide's default when `n_epochs` is `auto`."""
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // max(n_examples, 1))
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def price_for(api: ApiSettings, model: str) -> float:
    price = api.price_per_million_training_tokens.get(model)
    if price is None:
        known = ", ".join(sorted(api.price_per_million_training_tokens)) or "none"
        raise ValueError(
            f"no training price for {model!r} in `training.api.price_per_million_training_tokens` "
            f"(known: {known}); add one so the budget can be checked"
        )
    return price


def preflight(
    train_lines: Iterable[str],
    validation_lines: Iterable[str] | None,
    api: ApiSettings,
    model: str | None = None,
) -> PreflightReport:
    """Check the files, estimate tokens and cost, and list everything that blocks an upload."""
    model = model or api.model
    encoding = encoding_for_model(model)
    train = check_lines("training file", train_lines, encoding, api.context_limit, MIN_EXAMPLES)
    validation = (
        None
        if validation_lines is None
        else check_lines("validation file", validation_lines, encoding, api.context_limit)
    )
    heuristic = api.n_epochs == "auto"
    n_epochs = epochs_for(train.examples) if heuristic else int(api.n_epochs)
    price = price_for(api, model)
    trained = train.tokens * n_epochs
    cost = round(trained * price / 1_000_000, 4)
    blockers = [
        f"{check.name}: {sum(check.error_counts.values())} format error(s) "
        f"({', '.join(f'{k} x{v}' for k, v in check.error_counts.items())})"
        for check in (train, validation)
        if check and not check.ok
    ]
    if api.budget_usd is not None and cost > api.budget_usd:
        blockers.append(
            f"estimated cost ${cost:.2f} ({trained} trained tokens = {train.tokens} x "
            f"{n_epochs} epochs at ${price}/1M) exceeds the budget ${api.budget_usd:.2f}: raise "
            "`training.api.budget_usd`, lower `training.api.n_epochs`, or train on fewer examples"
        )
    return PreflightReport(
        model=model,
        encoding=encoding.name,
        context_limit=api.context_limit,
        train=train,
        validation=validation,
        n_epochs=n_epochs,
        epochs_from_heuristic=heuristic,
        billable_tokens=train.tokens,
        trained_tokens=trained,
        price_per_million=price,
        estimated_cost_usd=cost,
        budget_usd=api.budget_usd,
        blockers=blockers,
    )


def render(report: PreflightReport, max_errors: int = 50) -> str:
    """Human-readable report: verdict, errors with line numbers, token statistics, cost."""
    verdict = "fit to upload" if report.fit else "NOT fit to upload"
    lines = [f"pre-flight for {report.model} ({report.encoding}): {verdict}"]
    lines += [f"  blocked: {b}" for b in report.blockers]
    for check in (report.train, report.validation):
        if check is None:
            continue
        lines.append(f"{check.name}: {check.examples} examples, {check.tokens} tokens")
        for error in check.errors[:max_errors]:
            where = f"line {error.line}" if error.line else "file"
            lines.append(f"  {where}: {error.type}: {error.message}")
        if len(check.errors) > max_errors:
            lines.append(f"  ... and {len(check.errors) - max_errors} more")
        for label, dist in (
            ("messages/example", check.messages_per_example),
            ("tokens/example", check.tokens_per_example),
            ("assistant tokens/example", check.assistant_tokens_per_example),
        ):
            if dist:
                lines.append(
                    f"  {label}: min {dist.min}, median {dist.median}, mean {dist.mean}, "
                    f"p95 {dist.p95}, max {dist.max}"
                )
    source = "heuristic" if report.epochs_from_heuristic else "configured"
    budget = f"${report.budget_usd:.2f}" if report.budget_usd is not None else "none"
    lines.append(
        f"billable {report.billable_tokens} tokens x {report.n_epochs} epochs ({source}) = "
        f"{report.trained_tokens} trained tokens; estimated ${report.estimated_cost_usd:.4f} "
        f"(budget {budget})"
    )
    return "\n".join(lines)
