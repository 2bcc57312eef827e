"""The S3 layout lives in one module (tasks/storage/layout.py): its keys, and nobody else's."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from tasks.config import S3Settings, Settings, TrainingWorkerSettings
from tasks.ingest.objects import WATERMARK_KEY
from tasks.prepare.golden import golden_keys
from tasks.promote.registry import (
    RegistryError,
    alias_key,
    model_prefix,
    version_key,
    version_prefix,
    version_uri,
)
from tasks.storage import layout
from tasks.train.checkpoints import checkpoint_prefix
from tasks.train.handoff import handoff_prefix

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "tasks" / "storage" / "layout.py"
# a prefix formatted into a key, concatenated with one, or an s3:// URI built by hand
HAND_BUILT = re.compile(
    r"""\bf["'][^"']*\{[^{}]*_prefix\b[^{}]*\}"""  # f"{s3.raw_prefix}..."
    r"""|_prefix\b["'\]]*\s*\+"""  # s3.state_prefix + NAME, m["_prefix"] + ...
    r"""|\+\s*[\w.]*_prefix\b"""  # ... + settings.s3.golden_prefix
    r"""|s3://(\{|%s)"""  # f"s3://{bucket}/{key}", f"... under s3://{s3.bucket}", "s3://%s/%s"
    r"""|["']s3://["']\s*\+"""  # "s3://" + bucket
)


def _product_lines():
    scanned = [ROOT.glob(f"{folder}/**/*.py") for folder in ("tasks", "flows", "deployments")]
    for path in sorted(path for paths in scanned for path in paths):
        if path == LAYOUT:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            yield f"{path.relative_to(ROOT)}:{number}", line


def test_no_module_but_the_layout_formats_a_prefix_into_a_key_or_a_uri():
    offenders = [
        f"{where}: {line.strip()}" for where, line in _product_lines() if HAND_BUILT.search(line)
    ]
    assert offenders == [], "build these with tasks/storage/layout.py:\n" + "\n".join(offenders)


REGISTRY = ROOT / "tasks" / "promote" / "registry.py"
REGISTRY_KEYS = re.compile(
    r"layout\.(model_prefix|versions_prefix|version_prefix|alias_key|events_prefix)\b"
    r"|from tasks\.storage\.layout import .*\b(model_prefix|version|alias_key|events_prefix)"
)


def test_registry_keys_are_reached_only_through_the_registry():
    """The registry checks version names before they become keys; nobody goes around it."""
    offenders = [
        f"{where}: {line.strip()}"
        for where, line in _product_lines()
        if REGISTRY_KEYS.search(line) and not where.startswith(f"{REGISTRY.relative_to(ROOT)}:")
    ]
    assert offenders == [], "use tasks/promote/registry.py's key functions:\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    "line",
    [
        'key = f"{s3.staging_prefix}{run_id}/accepted.jsonl"',
        "key = s3.state_prefix + WATERMARK_KEY",
        'key = m["_prefix"] + "train.jsonl"',
        'return f"s3://{bucket}/{key}"',
        'f"no such object under s3://{s3.bucket}/{s3.raw_prefix}"',
        '"synced to s3://%s/%s", bucket, key',
        'uri = "s3://" + bucket',
        "key = settings.s3.datasets_prefix + version",
    ],
)
def test_the_rule_catches_the_hand_built_shapes(line):
    assert HAND_BUILT.search(line)


def _every_key(s3: S3Settings, worker: TrainingWorkerSettings) -> dict[str, str]:
    return {
        "raw day": layout.raw_day_prefix(s3, date(2026, 11, 21)),
        "raw object": layout.raw_key(s3, "2026-11-21", "a.jsonl.gz"),
        "raw uri": layout.raw_uri(s3),
        "staging": layout.staging_key(s3, "r1"),
        "quarantine": layout.quarantine_key(s3, "r1", "rejected"),
        "dataset": layout.dataset_prefix(s3, "ds-1"),
        "dataset file": layout.dataset_key(s3, "ds-1", "train.jsonl"),
        "dataset manifest": layout.dataset_manifest_key(s3, "ds-1"),
        "golden": layout.golden_data_key(s3),
        "golden manifest": layout.golden_manifest_key(s3),
        "watermark": layout.watermark_key(s3),
        "announced": layout.announced_key(s3),
        "drift state": layout.drift_state_key(s3, "bot"),
        "reports": layout.report_prefix(s3, "r1"),
        "quality": layout.quality_report_key(s3, "r1"),
        "data docs": layout.data_docs_prefix(s3, "r1"),
        "data docs index": layout.data_docs_index_key(s3, "r1"),
        "drift report": layout.drift_report_key(s3, "r1"),
        "drift chart": layout.drift_chart_key(s3, "r1"),
        "model": layout.model_prefix(s3, "bot"),
        "versions": layout.versions_prefix(s3, "bot"),
        "version": layout.version_prefix(s3, "bot", "v1"),
        "alias": layout.alias_key(s3, "bot", "champion"),
        "events": layout.events_prefix(s3, "bot"),
        "checkpoints": layout.checkpoint_prefix(worker.checkpoints_prefix, "k"),
        "handoff": layout.handoff_prefix(worker.handoff_prefix, "r1"),
        "uri": layout.uri(s3, "state/x.json"),
        "bucket uri": layout.uri(s3),
    }


def test_default_keys_are_the_documented_layout():
    assert _every_key(S3Settings(), TrainingWorkerSettings()) == {
        "raw day": "raw/support-logs/dt=2026-11-21/",
        "raw object": "raw/support-logs/dt=2026-11-21/a.jsonl.gz",
        "raw uri": "s3://support-retrain/raw/support-logs/",
        "staging": "staging/r1/accepted.jsonl",
        "quarantine": "quarantine/r1/rejected.jsonl",
        "dataset": "datasets/ds-1/",
        "dataset file": "datasets/ds-1/train.jsonl",
        "dataset manifest": "datasets/ds-1/manifest.json",
        "golden": "heldout/golden/golden.jsonl",
        "golden manifest": "heldout/golden/golden.json",
        "watermark": "state/ingest-watermark.json",
        "announced": "state/sensor-announced.json",
        "drift state": "state/drift-bot.json",
        "reports": "reports/r1/",
        "quality": "reports/r1/quality.json",
        "data docs": "reports/r1/data-docs/",
        "data docs index": "reports/r1/data-docs/index.html",
        "drift report": "reports/r1/drift.json",
        "drift chart": "reports/r1/drift.png",
        "model": "models/bot/",
        "versions": "models/bot/versions/",
        "version": "models/bot/versions/v1/",
        "alias": "models/bot/aliases/champion.json",
        "events": "models/bot/events/",
        "checkpoints": "checkpoints/k/",
        "handoff": "training/r1/",
        "uri": "s3://support-retrain/state/x.json",
        "bucket uri": "s3://support-retrain/",
    }


def test_custom_prefixes_are_honoured():
    s3 = S3Settings(
        bucket="b",
        raw_prefix="in/logs/",
        staging_prefix="tmp/",
        quarantine_prefix="q/",
        datasets_prefix="ds/",
        golden_prefix="gold/",
        state_prefix="st/",
        models_prefix="reg/",
        reports_prefix="rep/",
    )
    worker = TrainingWorkerSettings(checkpoints_prefix="ck/", handoff_prefix="ho/")
    assert _every_key(s3, worker) == {
        "raw day": "in/logs/dt=2026-11-21/",
        "raw object": "in/logs/dt=2026-11-21/a.jsonl.gz",
        "raw uri": "s3://b/in/logs/",
        "staging": "tmp/r1/accepted.jsonl",
        "quarantine": "q/r1/rejected.jsonl",
        "dataset": "ds/ds-1/",
        "dataset file": "ds/ds-1/train.jsonl",
        "dataset manifest": "ds/ds-1/manifest.json",
        "golden": "gold/golden.jsonl",
        "golden manifest": "gold/golden.json",
        "watermark": "st/ingest-watermark.json",
        "announced": "st/sensor-announced.json",
        "drift state": "st/drift-bot.json",
        "reports": "rep/r1/",
        "quality": "rep/r1/quality.json",
        "data docs": "rep/r1/data-docs/",
        "data docs index": "rep/r1/data-docs/index.html",
        "drift report": "rep/r1/drift.json",
        "drift chart": "rep/r1/drift.png",
        "model": "reg/bot/",
        "versions": "reg/bot/versions/",
        "version": "reg/bot/versions/v1/",
        "alias": "reg/bot/aliases/champion.json",
        "events": "reg/bot/events/",
        "checkpoints": "ck/k/",
        "handoff": "ho/r1/",
        "uri": "s3://b/state/x.json",
        "bucket uri": "s3://b/",
    }


def test_a_browser_url_goes_to_the_endpoint_when_one_is_set():
    key = "reports/r/data-docs/index.html"
    local = S3Settings(bucket="b", endpoint_url="http://127.0.0.1:9/")
    assert layout.browser_url(local, key) == "http://127.0.0.1:9/b/reports/r/data-docs/index.html"
    assert layout.browser_url(S3Settings(bucket="b"), key) == f"s3://b/{key}"


def test_the_stages_use_the_layout_keys():
    """The names the stages read and write are the layout's (older data must still be found)."""
    settings = Settings(model_name="bot")
    assert golden_keys(settings) == ("heldout/golden/golden.jsonl", "heldout/golden/golden.json")
    assert WATERMARK_KEY == "ingest-watermark.json"
    assert checkpoint_prefix(settings, "k") == "checkpoints/k/"
    assert handoff_prefix(settings, "r1") == "training/r1/"


def test_registry_keys_refuse_a_version_that_is_not_a_plain_name():
    settings = Settings(model_name="bot", s3={"models_prefix": "reg/"})
    assert version_prefix(settings, "v1") == "reg/bot/versions/v1/"
    assert version_key(settings, "v1", "card.json") == "reg/bot/versions/v1/card.json"
    assert version_uri(settings, "v1") == "s3://support-retrain/reg/bot/versions/v1/"
    assert alias_key(settings, "previous") == "reg/bot/aliases/previous.json"
    assert model_prefix(settings) == "reg/bot/"
    for bad in ("../other", "v1/../../state", "", "a/b", None):
        for build in (
            lambda v: version_prefix(settings, v),
            lambda v: version_key(settings, v, "card.json"),
            lambda v: version_uri(settings, v),
        ):
            with pytest.raises(RegistryError, match="not a plain version name"):
                build(bad)
