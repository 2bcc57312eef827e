"""Pre-flight checks: every format error type with its line number, token limits, epochs,
cost and the budget gate; tiktoken encodings load with no network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config import ApiSettings
from tasks.train.api.preflight import epochs_for, preflight, render
from tasks.train.api.tokens import encoding_for_model
from tests.helpers.fine_tuning_files import BROKEN, good_lines

MODEL = "gpt-4o-mini-2024-07-18"


def test_every_format_error_type_is_reported_with_its_line() -> None:
    lines = good_lines(30)
    where = {}
    for offset, (error_type, text) in enumerate(BROKEN.items()):
        position = 2 + offset * 2  # spread between good lines
        lines.insert(position, text)
        where[error_type] = position + 1  # 1-based
    report = preflight(lines, None, ApiSettings())
    found = {(e.type, e.line) for e in report.train.errors}
    for error_type, line in where.items():
        assert (error_type, line) in found, f"{error_type} not reported at line {line}"
    # nothing else is flagged: the good lines stay good
    assert {line for _, line in found} == set(where.values())
    assert not report.fit
    assert "format error" in report.blockers[0]
    text = render(report)
    assert f"line {where['unrecognized_role']}: unrecognized_role" in text


def test_empty_file_and_too_few_examples_block() -> None:
    empty = preflight([], None, ApiSettings())
    assert [e.type for e in empty.train.errors] == ["empty_file"]
    few = preflight(good_lines(3), None, ApiSettings())
    assert [e.type for e in few.train.errors] == ["too_few_examples"]
    assert not empty.fit and not few.fit


def test_example_over_the_context_limit_is_an_error_naming_the_setting() -> None:
    api = ApiSettings(context_limit=300)
    lines = good_lines(12)
    long_text = " ".join(f"word{i}" for i in range(400))
    lines.insert(
        5,
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": long_text},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        ),
    )
    report = preflight(lines, None, api)
    (error,) = report.train.errors
    assert (error.type, error.line) == ("example_too_long", 6)
    assert "training.api.context_limit" in error.message


def test_token_counts_follow_the_chat_format_and_the_model_encoding() -> None:
    encoding = encoding_for_model(MODEL)
    assert encoding.name == "o200k_base"
    assert encoding_for_model("gpt-3.5-turbo-0125").name == "cl100k_base"
    example = {
        "messages": [
            {"role": "user", "content": "hello world"},
            {"role": "assistant", "content": "hi there, friend"},
        ]
    }
    lines = [json.dumps(example)] * 10
    report = preflight(lines, None, ApiSettings(n_epochs=2))
    content = sum(
        len(encoding.encode(m["content"])) + len(encoding.encode(m["role"]))
        for m in example["messages"]
    )
    per_example = content + 3 * len(example["messages"]) + 3
    assert report.train.tokens_per_example.max == per_example
    assert report.billable_tokens == 10 * per_example
    assert report.trained_tokens == 2 * report.billable_tokens
    assert report.train.assistant_tokens_per_example.min == len(encoding.encode("hi there, friend"))


def test_validation_file_is_checked_too() -> None:
    report = preflight(good_lines(20), [*good_lines(4, seed=1), '{"messages": []}'], ApiSettings())
    assert report.train.ok
    assert [(e.type, e.line) for e in report.validation.errors] == [("missing_messages_list", 5)]
    assert report.blockers and report.blockers[0].startswith("validation file")


def test_epochs_heuristic_and_cost_against_budget() -> None:
    assert epochs_for(10) == 10  # tiny sets get more epochs
    assert epochs_for(500) == 3
    assert epochs_for(20_000) == 1  # huge sets fewer
    lines = good_lines(40)
    report = preflight(lines, None, ApiSettings())
    assert report.n_epochs == 3 and report.epochs_from_heuristic
    assert report.estimated_cost_usd == pytest.approx(report.trained_tokens * 3.0 / 1e6, abs=1e-4)
    assert report.fit
    tight = preflight(lines, None, ApiSettings(budget_usd=report.estimated_cost_usd / 2))
    assert not tight.fit
    assert "training.api.budget_usd" in tight.blockers[0]


def test_unknown_model_price_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="price_per_million_training_tokens"):
        preflight(good_lines(12), None, ApiSettings(), model="gpt-4o-2024-05-13-unpriced")


def test_encodings_load_with_no_network(tmp_path: Path) -> None:
    """A fresh cache dir, sockets refused: the encoding still loads (built from the package)."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from tasks.train.api.tokens import encoding_for_model\n"
        "print(len(encoding_for_model('gpt-4o-mini').encode('hello world')))\n"
    )
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    assert len(list(tmp_path.iterdir())) == 1
