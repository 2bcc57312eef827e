"""The S3 layout lives in one module (tasks/storage/layout.py): its keys, and nobody else's."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from tasks.config import S3Settings, Settings
from tasks.promote.registry import RegistryError, alias_key, version_key, version_uri
from tasks.storage import layout

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "tasks" / "storage" / "layout.py"
# a prefix formatted into a key, concatenated with one, or an s3:// URI built by hand
HAND_BUILT = re.compile(
    r"""\bf["'][^"']*\{[^{}]*_prefix\b[^{}]*\}"""  # f"{s3.raw_prefix}..."
    r"""|_prefix\b["'\]]*\s*\+"""  # s3.state_prefix + NAME, m["_prefix"] + ...
    r"""|\+\s*[\w.]*_prefix\b"""  # ... + settings.s3.golden_prefix
    r"""|\bf?["']s3://(\{|["']\s*\+|%s)"""  # f"s3://{bucket}/{key}", "s3://" + ..., "s3://%s"
)


def _product_lines():
    for path in sorted([*ROOT.glob("tasks/**/*.py"), *ROOT.glob("flows/**/*.py")]):
        if path == LAYOUT:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            yield f"{path.relative_to(ROOT)}:{number}", line


def test_no_module_but_the_layout_formats_a_prefix_into_a_key_or_a_uri():
    offenders = [
        f"{where}: {line.strip()}" for where, line in _product_lines() if HAND_BUILT.search(line)
    ]
    assert offenders == [], "build these with tasks/storage/layout.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "line",
    [
        'key = f"{s3.staging_prefix}{run_id}/accepted.jsonl"',
        "key = s3.state_prefix + WATERMARK_KEY",
        'key = m["_prefix"] + "train.jsonl"',
        'return f"s3://{bucket}/{key}"',
    ],
)
def test_the_rule_catches_the_hand_built_shapes(line):
    assert HAND_BUILT.search(line)


def test_default_keys_are_the_documented_layout():
    s3 = S3Settings()
    assert layout.raw_key(s3, date(2026, 11, 21), "a.jsonl.gz") == (
        "raw/support-logs/dt=2026-11-21/a.jsonl.gz"
    )
    assert layout.staging_key(s3, "r1") == "staging/r1/accepted.jsonl"
    assert layout.quarantine_key(s3, "r1", "rejected") == "quarantine/r1/rejected.jsonl"
    assert layout.dataset_key(s3, "ds-1", "manifest.json") == "datasets/ds-1/manifest.json"
    assert layout.golden_key(s3, "golden.jsonl") == "heldout/golden/golden.jsonl"
    assert layout.state_key(s3, "ingest-watermark.json") == "state/ingest-watermark.json"
    assert layout.report_key(s3, "r1", "quality.json") == "reports/r1/quality.json"
    assert layout.version_prefix(s3, "bot", "v1") == "models/bot/versions/v1/"
    assert layout.alias_key(s3, "bot", "champion") == "models/bot/aliases/champion.json"
    assert layout.events_prefix(s3, "bot") == "models/bot/events/"
    assert layout.checkpoint_prefix("checkpoints/", "k") == "checkpoints/k/"
    assert layout.uri(s3, "state/x.json") == "s3://support-retrain/state/x.json"


def test_custom_prefixes_and_endpoint_are_honoured():
    s3 = S3Settings(
        bucket="b", raw_prefix="in/", staging_prefix="tmp/", endpoint_url="http://127.0.0.1:9/"
    )
    assert layout.raw_key(s3, "2026-01-02", "x.jsonl") == "in/dt=2026-01-02/x.jsonl"
    assert layout.staging_key(s3, "r") == "tmp/r/accepted.jsonl"
    assert layout.browser_url(s3, "reports/r/a.html") == "http://127.0.0.1:9/b/reports/r/a.html"


def test_registry_keys_refuse_a_version_that_is_not_a_plain_name():
    settings = Settings(model_name="bot")
    assert version_key(settings, "v1", "card.json") == "models/bot/versions/v1/card.json"
    assert version_uri(settings, "v1") == "s3://support-retrain/models/bot/versions/v1/"
    assert alias_key(settings, "previous") == "models/bot/aliases/previous.json"
    for bad in ("../other", "v1/../../state", ""):
        with pytest.raises(RegistryError, match="not a plain version name"):
            version_key(settings, bad, "card.json")
