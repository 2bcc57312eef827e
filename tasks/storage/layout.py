"""The S3 layout: every key and `s3://` URI the product reads or writes comes from here.

One bucket; each prefix is a setting (`S3Settings`, `training.worker`), shown with its default:

| key                                                   | what                                    |
|-------------------------------------------------------|-----------------------------------------|
| `raw/support-logs/dt=YYYY-MM-DD/*.jsonl(.gz)`          | incoming logs (read only)               |
| `staging/<run-id>/accepted.jsonl`                     | a run's redacted records                |
| `quarantine/<run-id>/<stage>.jsonl`                   | rejected records: pointer, line, reason |
| `datasets/<version>/` + `manifest.json`               | curated chat-format dataset versions    |
| `heldout/golden/golden.jsonl`, `golden.json`          | the frozen evaluation set + its manifest|
| `state/ingest-watermark.json`                         | objects ingested (key → ETag)           |
| `state/sensor-announced.json`                         | objects the sensor announced            |
| `state/drift-<model>.json`                            | the drift monitor's alert state         |
| `reports/<run-id>/quality.json`, `data-docs/`         | data quality report and Data Docs       |
| `reports/<run-id>/drift.json`, `drift.png`            | drift report and chart                  |
| `models/<name>/versions/<version>/`                   | registry versions (via the registry)    |
| `models/<name>/aliases/<alias>.json`, `events/`       | aliases and the audit log               |
| `checkpoints/<run-key>/`, `training/<run-id>/`        | training checkpoints and hand-off       |

Registry keys are built here but reached through tasks/promote/registry.py, which checks
version names first. `tests/storage/test_layout.py` keeps every other module from formatting
a prefix into a key.
"""

from __future__ import annotations

from datetime import date

from tasks.config import S3Settings

DATASET_MANIFEST = "manifest.json"  # the last object a dataset version gets: "complete"
WATERMARK = "ingest-watermark.json"
ANNOUNCED = "sensor-announced.json"


def s3_uri(bucket: str, key: str = "") -> str:
    """`s3://bucket/key`: how a location is shown to people and named in events."""
    return f"s3://{bucket}/{key}"


def uri(s3: S3Settings, key: str = "") -> str:
    """The URI of `key` in the configured bucket."""
    return s3_uri(s3.bucket, key)


def browser_url(s3: S3Settings, key: str) -> str:
    """Where a person opens an object: the endpoint's URL (path style) when one is configured
    (moto, MinIO), else the s3:// URI."""
    if s3.endpoint_url:
        return f"{s3.endpoint_url.rstrip('/')}/{s3.bucket}/{key}"
    return uri(s3, key)


def in_prefix(prefix: str, name: str) -> str:
    """`name` under a prefix read back from a stored record (a card's dataset prefix)."""
    return prefix + name


# --- incoming logs ----------------------------------------------------------------------------


def raw_uri(s3: S3Settings) -> str:
    """Where incoming logs land, as people are told: `s3://bucket/raw/support-logs/`."""
    return uri(s3, s3.raw_prefix)


def raw_day_prefix(s3: S3Settings, day: date | str) -> str:
    """The partition of one day's logs: `raw/support-logs/dt=YYYY-MM-DD/`."""
    day_text = day.isoformat() if isinstance(day, date) else day
    return f"{s3.raw_prefix}dt={day_text}/"


def raw_key(s3: S3Settings, day: date | str, name: str) -> str:
    """One object of one day's logs."""
    return raw_day_prefix(s3, day) + name


# --- one run's intermediate data --------------------------------------------------------------


def staging_key(s3: S3Settings, run_id: str) -> str:
    """A run's accepted, redacted records."""
    return f"{s3.staging_prefix}{run_id}/accepted.jsonl"


def quarantine_key(s3: S3Settings, run_id: str, stage: str) -> str:
    """A run's rejected records of one stage (`rejected`, `gate-rejected`, `prepare`)."""
    return f"{s3.quarantine_prefix}{run_id}/{stage}.jsonl"


def report_prefix(s3: S3Settings, run_id: str) -> str:
    """Where a run's reports go: `reports/<run-id>/`."""
    return f"{s3.reports_prefix}{run_id}/"


def report_key(s3: S3Settings, run_id: str, name: str) -> str:
    """One report of a run, e.g. `quality.json`, `data-docs/index.html`, `drift.json`."""
    return report_prefix(s3, run_id) + name


def quality_report_key(s3: S3Settings, run_id: str) -> str:
    return report_key(s3, run_id, "quality.json")


def data_docs_prefix(s3: S3Settings, run_id: str) -> str:
    """The run's Great Expectations Data Docs site; its entry is `index.html`."""
    return report_key(s3, run_id, "data-docs/")


def data_docs_index_key(s3: S3Settings, run_id: str) -> str:
    return data_docs_prefix(s3, run_id) + "index.html"


def drift_report_key(s3: S3Settings, run_id: str) -> str:
    return report_key(s3, run_id, "drift.json")


def drift_chart_key(s3: S3Settings, run_id: str) -> str:
    return report_key(s3, run_id, "drift.png")


# --- datasets, golden set, state --------------------------------------------------------------


def dataset_prefix(s3: S3Settings, version: str) -> str:
    """A curated dataset version: `datasets/<version>/`."""
    return f"{s3.datasets_prefix}{version}/"


def dataset_key(s3: S3Settings, version: str, name: str) -> str:
    """One file of a dataset version (`train.jsonl`, `manifest.json`, ...)."""
    return dataset_prefix(s3, version) + name


def dataset_manifest_key(s3: S3Settings, version: str) -> str:
    return dataset_key(s3, version, DATASET_MANIFEST)


def golden_key(s3: S3Settings, name: str) -> str:
    """One file of the frozen golden set (`golden.jsonl`, `golden.json`)."""
    return s3.golden_prefix + name


def golden_data_key(s3: S3Settings) -> str:
    """The frozen golden set's conversations: `heldout/golden/golden.jsonl`."""
    return golden_key(s3, "golden.jsonl")


def golden_manifest_key(s3: S3Settings) -> str:
    """What was frozen, when, and with which fraction: `heldout/golden/golden.json`."""
    return golden_key(s3, "golden.json")


def state_key(s3: S3Settings, name: str) -> str:
    """A small state object (watermark, sensor's announced objects, drift alert state)."""
    return s3.state_prefix + name


def watermark_key(s3: S3Settings) -> str:
    """Ingest's watermark: every raw object handled, with its ETag."""
    return state_key(s3, WATERMARK)


def announced_key(s3: S3Settings) -> str:
    """The S3 sensor's objects announced but not ingested yet."""
    return state_key(s3, ANNOUNCED)


def drift_state_key(s3: S3Settings, model_name: str) -> str:
    """The drift monitor's alert state of one model: `state/drift-<model>.json`."""
    return state_key(s3, f"drift-{model_name}.json")


# --- model registry (use tasks/promote/registry.py) -------------------------------------------


def model_prefix(s3: S3Settings, model_name: str) -> str:
    return f"{s3.models_prefix}{model_name}/"


def versions_prefix(s3: S3Settings, model_name: str) -> str:
    return model_prefix(s3, model_name) + "versions/"


def version_prefix(s3: S3Settings, model_name: str, version: str) -> str:
    return f"{versions_prefix(s3, model_name)}{version}/"


def alias_key(s3: S3Settings, model_name: str, alias: str) -> str:
    return f"{model_prefix(s3, model_name)}aliases/{alias}.json"


def events_prefix(s3: S3Settings, model_name: str) -> str:
    return model_prefix(s3, model_name) + "events/"


# --- training on workers ----------------------------------------------------------------------


def checkpoint_prefix(checkpoints_prefix: str, run_key: str) -> str:
    """`checkpoints/<run-key>/`: checkpoints of one training run, shared by its retries."""
    return f"{checkpoints_prefix}{run_key}/"


def handoff_prefix(handoff_prefix_setting: str, run_id: str) -> str:
    """`training/<run-id>/`: where a fine-tune run leaves its outputs for the retrain run
    (`adapter/`, `merged/`, `train_result.json`, `output.json`)."""
    return f"{handoff_prefix_setting}{run_id}/"
