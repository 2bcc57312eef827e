"""`retrain preflight FILE`: exit 0 fit, 1 blocked (format error or budget), 2 usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.app import app
from tests.helpers.fine_tuning_files import BROKEN, good_lines

MODEL = "gpt-4o-mini-2024-07-18"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["preflight", *args])


def test_a_fit_file_exits_0_with_tokens_and_cost(tmp_path: Path) -> None:
    train = write(tmp_path / "train.jsonl", good_lines(25))
    validation = write(tmp_path / "val.jsonl", good_lines(5, seed=3))
    result = invoke(str(train), "--validation", str(validation), "--model", MODEL)
    assert result.exit_code == 0, result.output
    assert "fit to upload" in result.output and "NOT" not in result.output
    assert "training file: 25 examples" in result.output
    assert "validation file: 5 examples" in result.output
    assert "tokens/example: min" in result.output and "estimated $" in result.output


def test_json_report_parses_and_names_errors_by_line(tmp_path: Path) -> None:
    lines = good_lines(20)
    lines[6] = BROKEN["unrecognized_role"]
    lines[11] = BROKEN["invalid_json"]
    result = invoke(str(write(tmp_path / "t.jsonl", lines)), "--model", MODEL, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["fit"] is False
    assert [(e["type"], e["line"]) for e in report["train"]["errors"]] == [
        ("unrecognized_role", 7),
        ("invalid_json", 12),
    ]
    assert report["train"]["error_counts"] == {"unrecognized_role": 1, "invalid_json": 1}
    assert report["billable_tokens"] > 0 and report["estimated_cost_usd"] > 0


def test_each_format_error_type_exits_1_naming_its_line(tmp_path: Path) -> None:
    for error_type, text in BROKEN.items():
        lines = good_lines(12)
        lines.insert(4, text)
        result = invoke(str(write(tmp_path / f"{error_type}.jsonl", lines)), "--model", MODEL)
        assert result.exit_code == 1, error_type
        assert f"line 5: {error_type}:" in result.output


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_an_empty_file_exits_1(tmp_path: Path, content: str) -> None:
    (tmp_path / "empty.jsonl").write_text(content)
    result = invoke(str(tmp_path / "empty.jsonl"), "--model", MODEL, "--json")
    assert result.exit_code == 1
    errors = json.loads(result.output)["train"]["errors"]
    assert [e["type"] for e in errors] == ["empty_file"]


def test_a_budget_overrun_exits_1_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_TRAINING__API__BUDGET_USD", "0.00001")
    result = invoke(str(write(tmp_path / "t.jsonl", good_lines(30))), "--model", MODEL)
    assert result.exit_code == 1
    assert "exceeds the budget" in result.output and "training.api.budget_usd" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["does-not-exist.jsonl"],  # missing file
        ["{train}", "--validation", "missing-val.jsonl"],
        ["{train}", "--model", "some-unpriced-model"],  # no price: budget cannot be checked
        [],  # no file at all
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    train = write(tmp_path / "t.jsonl", good_lines(12))
    result = invoke(*[a.format(train=train) for a in args])
    assert result.exit_code == 2, result.output


def test_invalid_settings_exit_2_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_TRAINING__API__BUDGET_USD", "-5")
    result = invoke(str(write(tmp_path / "t.jsonl", good_lines(12))), "--model", MODEL)
    assert result.exit_code == 2
    assert "budget_usd" in result.output
