"""`retrain registry ...` against a real (moto) S3 registry: list, show, promote, history,
rollback, and clear errors for what cannot be done."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli.app import app
from tasks.promote.registry import CHAMPION, PREVIOUS, read_alias
from tasks.storage.s3 import s3_client
from tests.helpers.registry import register


@pytest.fixture
def cli(settings, monkeypatch):
    monkeypatch.setenv("RETRAIN_S3__BUCKET", settings.s3.bucket)
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args))

    return invoke


def alias(settings, name: str) -> str | None:
    return (read_alias(s3_client(settings.s3), settings, name).body or {}).get("version")


def test_promote_list_history_and_rollback(cli, settings, tmp_path):
    for version in ("v1", "v2"):
        register(settings, version, tmp_path)

    assert "nothing to roll back to" in cli("registry", "rollback", "--reason", "x").output
    for version in ("v1", "v2"):
        result = cli("registry", "promote", version, "--reason", f"ok {version}", "--by", "ana")
        assert result.exit_code == 0, result.output
    assert (alias(settings, CHAMPION), alias(settings, PREVIOUS)) == ("v2", "v1")

    listed = json.loads(cli("registry", "list", "--json").stdout)
    assert [(r["version"], r["status"], r["aliases"]) for r in listed] == [
        ("v1", "promoted", ["previous"]),
        ("v2", "promoted", ["champion"]),
    ]

    result = cli("registry", "rollback", "--reason", "v2 answers in German", "--by", "ben")
    assert result.exit_code == 0, result.output
    assert alias(settings, CHAMPION) == "v1"
    assert json.loads(cli("registry", "show", "v2").stdout)["status"] == "rolled_back"

    events = json.loads(cli("registry", "history", "--json").stdout)
    assert [(e["kind"], e["version"]) for e in events] == [
        ("promote", "v1"),
        ("promote", "v2"),
        ("rollback", "v1"),
    ]
    assert events[-1]["by"] == "ben" and events[-1]["reasons"] == ["v2 answers in German"]
    assert "rollback v1  ben  v2 answers in German" in cli("registry", "history").stdout


@pytest.mark.parametrize("version", ["nope", "../../etc"])
def test_unknown_or_unsafe_versions_are_refused_with_a_hint(cli, version):
    for args in (("registry", "show", version), ("registry", "promote", version, "--reason", "x")):
        result = cli(*args)
        assert result.exit_code == 1
        assert "retrain registry list" in result.output or "not a plain version" in result.output


def test_evaluate_without_a_golden_set_says_what_to_do(cli):
    result = cli("evaluate", "--model", "base")
    assert result.exit_code == 1 and "no golden set is frozen yet" in result.output
