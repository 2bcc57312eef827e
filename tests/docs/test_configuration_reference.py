"""docs/configuration.md is what docs/config_reference.py makes of tasks/config.py today.

.venv/bin/pytest -q tests/docs
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "config_reference.py"


def _generator():
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_reference_matches_the_settings():
    generated = _generator().generate()
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == generated, (
        "docs/configuration.md is stale: run `make docs` "
        "(`.venv/bin/python docs/config_reference.py`) and commit it"
    )


def test_every_setting_has_a_row_with_its_env_var_and_a_meaning():
    generator = _generator()
    from tasks.config import Settings

    rows = [row for section in generator.sections(Settings) for row in section.rows]
    settings = {row.setting for row in rows}
    assert {"`s3.bucket`", "`training.window.replay_days`", "`drift.alpha`"} <= settings
    by_name = {row.setting: row for row in rows}
    assert by_name["`training.window.replay_days`"].env == (
        "`RETRAIN_TRAINING__WINDOW__REPLAY_DAYS`"
    )
    assert by_name["`cache_dir`"].default == "`~/.cache/retrain`"
    assert not [row.setting for row in rows if not row.meaning], "a Field lacks a description"


def test_check_mode_exits_1_when_stale(tmp_path, monkeypatch):
    generator = _generator()
    stale = tmp_path / "configuration.md"
    stale.write_text("# out of date\n")
    monkeypatch.setattr(generator, "OUTPUT", stale)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
