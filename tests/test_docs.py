"""The documentation stays true: docs/configuration.md is what docs/config_reference.py makes
of tasks/config.py today, and every relative link in README.md and docs/*.md points at a file
that exists (and, for a `#fragment` into a Markdown page, at one of its headings).

    .venv/bin/pytest -q tests/test_docs.py
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "config_reference.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


def _generator():
    """docs/config_reference.py, loaded from its file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# --- the configuration reference ---------------------------------------------------------------


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
    by_name = {row.setting: row for row in rows}
    assert {"`s3.bucket`", "`training.window.replay_days`", "`drift.alpha`"} <= set(by_name)
    assert by_name["`training.window.replay_days`"].env == (
        "`RETRAIN_TRAINING__WINDOW__REPLAY_DAYS`"
    )
    assert by_name["`training.api.providers.<name>.base_url`"].env == (
        "`RETRAIN_TRAINING__API__PROVIDERS__<NAME>__BASE_URL`"
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


# --- links ---------------------------------------------------------------------------------------


def _prose(text: str) -> str:
    return CODE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", page.read_text()), re.M)
    return {_slug(heading) for heading in headings}


def _links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(_prose(page.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_pages_link_back_to_the_readme():
    assert len(PAGES) > 5
    for page in PAGES[1:]:
        assert "../README.md" in page.read_text(), f"{page.name} has no link back to the README"
