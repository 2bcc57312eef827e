"""Training window: what a run trains on. The new batch, plus a replay of earlier curated dataset
versions (last `replay_days` days, at most `replay_max_examples` examples, newest first),
deduplicated across versions and with every example that would leak the golden set dropped.

A quiet day with 60 new conversations then still trains on the week before it, instead of
producing a model that knows less than yesterday's.

    python -c "from tasks.config import Settings; print(Settings().training.window)"
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import Settings, WindowSettings
from tasks.prepare.dataset import DatasetRef
from tasks.prepare.golden import FrozenGolden, example_key, load_golden, normalise
from tasks.storage import layout
from tasks.storage.s3 import get_json, get_jsonl, list_objects, put_json, s3_client

MANIFEST = layout.DATASET_MANIFEST


class WindowVersion(BaseModel):
    """One curated dataset version in the window and how many of its examples are used."""

    version: str
    created_at: str
    train_key: str
    validation_key: str
    examples: int = 0
    new: bool = False


class TrainingWindow(BaseModel):
    """The dataset versions a run trains on, newest first (the new batch is the first)."""

    versions: list[WindowVersion]
    train_examples: int = 0
    replayed_examples: int = 0
    duplicates_dropped: int = 0
    golden_dropped: int = 0


def single_version_window(dataset: DatasetRef) -> TrainingWindow:
    """A window of one version: the dataset's own split, nothing replayed."""
    version = WindowVersion(
        version=dataset.version,
        created_at="",
        train_key=dataset.train_key,
        validation_key=dataset.validation_key,
        new=True,
    )
    return TrainingWindow(versions=[version])


def content_key(example: dict[str, Any]) -> str:
    return normalise(" ".join(m["content"] for m in example["messages"]))


def in_content_order(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples sorted by a hash of their content. The trainer's seeded shuffle then depends
    only on which examples the window holds, not on the order its versions were read in: the
    same examples train the same model whether they came as one version or as seven."""
    return sorted(examples, key=lambda e: hashlib.sha256(content_key(e).encode()).digest())


def leaks_golden(example: dict[str, Any], golden: FrozenGolden | None) -> bool:
    """Same or near-duplicate customer message as a golden example (training rows carry no id)."""
    return golden is not None and golden.leak_reason("", example_key(example)) is not None


def select_examples(
    per_version: list[list[dict[str, Any]]],
    golden: FrozenGolden | None,
    replay_cap: int | None,
) -> tuple[list[list[dict[str, Any]]], int, int]:
    """Keep each example once (newest version wins), never a golden one, and at most
    `replay_cap` from the versions after the first. Returns (kept per version, dups, golden)."""
    seen: set[str] = set()
    kept: list[list[dict[str, Any]]] = []
    duplicates = golden_dropped = replayed = 0
    for index, examples in enumerate(per_version):
        rows = []
        for example in examples:
            key = content_key(example)
            if key in seen:
                duplicates += 1
                continue
            if leaks_golden(example, golden):
                golden_dropped += 1
                continue
            if index > 0 and replay_cap is not None and replayed >= replay_cap:
                break
            seen.add(key)
            rows.append(example)
            replayed += index > 0
        kept.append(rows)
    return kept, duplicates, golden_dropped


def _manifests(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    keys = [o["Key"] for o in list_objects(client, bucket, prefix) if o["Key"].endswith(MANIFEST)]
    return [get_json(client, bucket, key).body | {"_prefix": key[: -len(MANIFEST)]} for key in keys]


def replay_candidates(
    manifests: list[dict[str, Any]], new_version: str, now: datetime, policy: WindowSettings
) -> list[dict[str, Any]]:
    """Earlier versions inside the age limit, newest first."""
    if policy.replay_days == 0 or policy.replay_max_examples == 0:
        return []
    oldest = None if policy.replay_days is None else now - timedelta(days=policy.replay_days)
    earlier = [
        m
        for m in manifests
        if m["version"] != new_version
        and (oldest is None or datetime.fromisoformat(m["created_at"]) >= oldest)
    ]
    return sorted(earlier, key=lambda m: m["created_at"], reverse=True)


def _load(client: Any, bucket: str, window: TrainingWindow, split: str) -> list[list[dict]]:
    return [
        [{"messages": e["messages"]} for e in get_jsonl(client, bucket, getattr(v, split))]
        for v in window.versions
    ]


def load_window_examples(
    settings: Settings, window: TrainingWindow
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation) examples of the window, newest first, deduplicated, golden-free."""
    s3 = settings.s3
    client = s3_client(s3)
    golden = load_golden(client, settings)
    cap = settings.training.window.replay_max_examples
    train, _, _ = select_examples(_load(client, s3.bucket, window, "train_key"), golden, cap)
    validation, _, _ = select_examples(
        _load(client, s3.bucket, window, "validation_key"), golden, None
    )
    return [e for rows in train for e in rows], [e for rows in validation for e in rows]


@task(retries=2, retry_delay_seconds=5)  # reads S3 and rewrites one manifest: idempotent
def build_window(settings: Settings, dataset: DatasetRef) -> TrainingWindow:
    """The new dataset version plus the earlier ones the window policy replays; records the
    versions in the new version's manifest."""
    s3, policy = settings.s3, settings.training.window
    client = s3_client(s3)
    manifests = _manifests(client, s3.bucket, s3.datasets_prefix)
    current = next(m for m in manifests if m["version"] == dataset.version)
    now = datetime.fromisoformat(current["created_at"])
    chosen = [current, *replay_candidates(manifests, dataset.version, now, policy)]
    window = TrainingWindow(
        versions=[
            WindowVersion(
                version=m["version"],
                created_at=m["created_at"],
                train_key=layout.in_prefix(m["_prefix"], "train.jsonl"),
                validation_key=layout.in_prefix(m["_prefix"], "validation.jsonl"),
                new=m is current,
            )
            for m in chosen
        ]
    )
    kept, duplicates, golden_dropped = select_examples(
        _load(client, s3.bucket, window, "train_key"),
        load_golden(client, settings),
        policy.replay_max_examples,
    )
    versions = [
        v.model_copy(update={"examples": len(rows)})
        for v, rows in zip(window.versions, kept, strict=True)
        if rows or v.new
    ]
    window = TrainingWindow(
        versions=versions,
        train_examples=sum(v.examples for v in versions),
        replayed_examples=sum(v.examples for v in versions if not v.new),
        duplicates_dropped=duplicates,
        golden_dropped=golden_dropped,
    )
    manifest = {k: v for k, v in current.items() if k != "_prefix"}
    manifest["window"] = window.model_dump(mode="json")
    put_json(client, s3.bucket, layout.in_prefix(dataset.prefix, MANIFEST), manifest)
    return window
