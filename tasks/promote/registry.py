"""Model registry in S3: versions, aliases moved by conditional writes, an audit log of events.

    models/<name>/versions/<version>/adapter/...   LoRA adapter + tokenizer (safetensors)
    models/<name>/versions/<version>/merged/...    merged weights, with `training.merge_adapter`
    models/<name>/versions/<version>/card.json     metrics, lineage, gate decision, status
    models/<name>/aliases/<alias>.json             {"version": ...}: champion, previous
    models/<name>/events/<stamp>-<id>-<kind>.json  one object per promote / reject / rollback

Every alias (`previous` included) moves only with If-Match on the ETag read before the move
(If-None-Match when it does not exist yet), so of two concurrent promotions exactly one wins; the
loser records a `reject` event saying so. A card says `promoted` only after the alias moved.
Version ids carry a random suffix, so two runs in the same second never share a prefix. Every
version name read from S3 is checked before it becomes part of a local path.

The promotion policy (whether a challenger deserves the alias) lives in tasks/promote/policy.py.

    retrain registry list | show VERSION | history | promote VERSION | rollback --reason "..."
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import Settings
from tasks.evaluate.aggregate import Comparison, ModelRef
from tasks.prepare.dataset import DatasetRef
from tasks.promote.policy import Decision
from tasks.storage import layout
from tasks.storage.s3 import (
    ConcurrentUpdateError,
    VersionedJson,
    download_prefix,
    get_json,
    list_objects,
    put_bytes_if,
    put_json_if,
    s3_client,
    upload_dir,
)
from tasks.train.base_model import resolve_base_model
from tasks.train.result import ApiTrainResult, TrainResult

CHAMPION = "champion"
PREVIOUS = "previous"
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ALIAS_RETRIES = 3  # `previous` and card status updates re-read and retry on a lost race


class Champion(BaseModel):
    """The incumbent to beat, and the alias ETag a promotion must match."""

    model: ModelRef
    alias_etag: str | None


class PromotionResult(BaseModel):
    """What apply_decision did: the alias moved or not, and why; the audit event written."""

    promoted: bool
    reasons: list[str]
    event_key: str
    champion: str | None  # the version the champion alias points at afterwards


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked (the message says why and what to do)."""


def model_prefix(settings: Settings) -> str:
    """`models/<name>/`: everything the registry holds for the configured model."""
    return layout.model_prefix(settings.s3, settings.model_name)


def new_version_id(now: datetime | None = None) -> str:
    """Sortable by time, unique by its random suffix: `v20261121T100400-3f9a1c2b`."""
    return f"v{(now or datetime.now(UTC)):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def checked_version(version: Any, where: str) -> str:
    """A version name read from S3 or typed by a person, refused unless it is a plain name."""
    if not isinstance(version, str) or not VERSION_NAME.fullmatch(version) or ".." in version:
        raise RegistryError(
            f"{where} names version {version!r}, which is not a plain version name "
            "(letters, digits, `_.-`, no `..`); fix or remove that object before using the registry"
        )
    return version


def alias_key(settings: Settings, alias: str) -> str:
    return layout.alias_key(settings.s3, settings.model_name, alias)


def version_prefix(settings: Settings, version: str) -> str:
    """`models/<name>/versions/<version>/`, for a plain version name only."""
    checked = checked_version(version, "a request")
    return layout.version_prefix(settings.s3, settings.model_name, checked)


def version_key(settings: Settings, version: str, name: str) -> str:
    """One object of a version: `card.json`, `api.json`, `adapter/...`."""
    return version_prefix(settings, version) + name


def version_uri(settings: Settings, version: str) -> str:
    return layout.uri(settings.s3, version_prefix(settings, version))


def read_alias(client: Any, settings: Settings, alias: str) -> VersionedJson:
    """An alias body with its ETag; its `version` (if any) is validated."""
    found = get_json(client, settings.s3.bucket, alias_key(settings, alias))
    if found.body is not None and found.body.get("version") is not None:
        checked_version(found.body["version"], f"alias `{alias}`")
    return found


def alias_version(alias: VersionedJson) -> str | None:
    return (alias.body or {}).get("version")


def read_card(client: Any, settings: Settings, version: str) -> VersionedJson:
    card = get_json(client, settings.s3.bucket, version_key(settings, version, "card.json"))
    if card.body is None:
        raise RegistryError(
            f"version {version!r} of model {settings.model_name!r} has no card.json: "
            "list the registered versions with `retrain registry list`"
        )
    return card


def model_card(
    settings: Settings,
    version: str,
    run_id: str,
    dataset: DatasetRef,
    trained: TrainResult,
    comparisons: dict[str, Comparison],
    decision: Decision,
) -> dict[str, Any]:
    """What a version is and where it came from: enough to reproduce or audit it.

    `status` starts as `candidate`; apply_decision sets `promoted` after the alias moved, or
    `rejected`.
    """
    return {
        "name": settings.model_name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "status": "candidate",
        "base_model": trained.base_model,
        "format": "peft-lora-safetensors" if trained.method == "lora" else "safetensors",
        "training": {
            **settings.training.model_dump(),
            "steps": trained.steps,
            "train_loss": trained.train_loss,
            "seconds": trained.seconds,
            "device": trained.device,
            "examples_seen": trained.examples_seen,
            "fraction_seen": trained.fraction_seen,
            "best_val_loss": trained.best_val_loss,
            "truncated_examples": trained.truncated_examples,
            "stopped_by": trained.stopped_by,
            "init": trained.init,
            "trainer_args": trained.training_args,  # as JSON: no pickled training_args.bin
        },
        "lineage": {
            "run_id": run_id,
            "dataset_version": dataset.version,
            "dataset_prefix": dataset.prefix,
            "dataset_versions_trained": trained.dataset_versions,
        },
        "evaluation": {
            name: {
                side: report.model_dump(
                    include={"model", "kind", "base_model", "overall", "slices"}
                )
                for side, report in (("challenger", pair.challenger), ("incumbent", pair.incumbent))
            }
            for name, pair in comparisons.items()
        },
        "gate": decision.model_dump(),
    }


@task(retries=2, retry_delay_seconds=5)
def current_champion(settings: Settings) -> Champion:
    """The champion model, downloaded to the cache; the base model when none exists yet."""
    client = s3_client(settings.s3)
    alias = read_alias(client, settings, CHAMPION)
    version = alias_version(alias)
    if version is None:
        base_dir = resolve_base_model(settings.training.base_model, settings.cache_dir, settings.s3)
        return Champion(
            model=ModelRef(
                label=f"base ({settings.training.base_model})",
                base_model_dir=str(base_dir),
                base_model=settings.training.base_model,
            ),
            alias_etag=alias.etag,
        )
    return Champion(model=load_version(settings, version), alias_etag=alias.etag)


def load_version(settings: Settings, version: str) -> ModelRef:
    """A registered version's adapter downloaded to the cache, as a loadable ModelRef."""
    client = s3_client(settings.s3)
    card = read_card(client, settings, version).body
    local = settings.cache_dir / "registry" / settings.model_name / checked_version(version, "")
    adapter_dir = download_prefix(
        client, settings.s3.bucket, version_key(settings, version, "adapter/"), local
    )
    base_dir = resolve_base_model(card["base_model"], settings.cache_dir, settings.s3)
    return ModelRef(
        label=f"champion {version}",
        base_model_dir=str(base_dir),
        adapter_dir=str(adapter_dir),
        version=version,
        base_model=card["base_model"],
    )


@task  # no retries: the card is created once (If-None-Match); boto3 retries transient errors
def register_version(
    settings: Settings,
    version: str,
    adapter_dir: str,
    card: dict[str, Any],
    merged_dir: str | None = None,
) -> str:
    """Upload the adapter (and the merged weights, when trained with `merge_adapter`) and its
    card as a new, immutable version; returns its S3 prefix.

    The card is created first with If-None-Match, so a version id that somehow exists already
    fails before any adapter file of another run is overwritten.
    """
    client, bucket = s3_client(settings.s3), settings.s3.bucket

    def key(name: str) -> str:
        return version_key(settings, version, name)

    put_json_if(client, bucket, key("card.json"), card, expected_etag=None)
    upload_dir(client, Path(adapter_dir), bucket, key("adapter/"))
    if merged_dir:
        upload_dir(client, Path(merged_dir), bucket, key("merged/"))
    readme = Path(adapter_dir) / "README.md"  # the Hugging Face model card, beside card.json
    if readme.is_file():
        put_bytes_if(client, bucket, key("README.md"), readme.read_bytes(), None)
    return version_uri(settings, version)


@task  # no retries: both objects are created once (If-None-Match)
def register_api_version(
    settings: Settings, version: str, trained: ApiTrainResult, card: dict[str, Any]
) -> str:
    """A registry version for a hosted model: `api.json` + `card.json`, no weights."""
    client = s3_client(settings.s3)
    record = trained.api_record()
    api_key = version_key(settings, version, "api.json")
    put_json_if(client, settings.s3.bucket, api_key, record, expected_etag=None)
    # generation metrics carry NaN perplexity: stored as null so card.json stays strict JSON
    card = json.loads(json.dumps(card, default=str), parse_constant=lambda _: None)
    card = {**card, "format": "hosted-fine-tune", "api": record}
    card_key = version_key(settings, version, "card.json")
    put_json_if(client, settings.s3.bucket, card_key, card, expected_etag=None)
    return version_uri(settings, version)


def write_event(client: Any, settings: Settings, kind: str, body: dict[str, Any]) -> str:
    """One immutable audit object per event; the random part keeps same-instant events apart."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"{stamp}-{uuid.uuid4().hex[:8]}-{kind}.json"
    key = layout.events_prefix(settings.s3, settings.model_name) + name
    put_json_if(client, settings.s3.bucket, key, {"kind": kind, "at": stamp, **body}, None)
    return key


def _update_with_retry(client: Any, settings: Settings, key: str, change) -> None:
    """Read-modify-write one JSON object with If-Match, re-reading after a lost race."""
    for attempt in range(ALIAS_RETRIES):
        current = get_json(client, settings.s3.bucket, key)
        try:
            put_json_if(client, settings.s3.bucket, key, change(current.body), current.etag)
            return
        except ConcurrentUpdateError:
            if attempt == ALIAS_RETRIES - 1:
                raise


def set_card_status(
    client: Any, settings: Settings, version: str, status: str, **fields: Any
) -> None:
    key = version_key(settings, version, "card.json")
    read_card(client, settings, version)  # a clear error if the version does not exist
    _update_with_retry(client, settings, key, lambda card: {**card, "status": status, **fields})


def move_champion(
    client: Any,
    settings: Settings,
    version: str,
    expected_etag: str | None,
    replaced: str | None,
    **audit: Any,
) -> None:
    """Point `champion` at version (If-Match expected_etag), then `previous` at the replaced one.

    The champion write is the one that decides a race; `previous` follows with its own
    conditional write, re-read on conflict (only a concurrent rollback can touch it).
    """
    now = datetime.now(UTC).isoformat()
    put_json_if(
        client,
        settings.s3.bucket,
        alias_key(settings, CHAMPION),
        {"version": version, "updated_at": now, **audit},
        expected_etag=expected_etag,
    )
    if replaced:

        def previous_body(old: dict[str, Any] | None) -> dict[str, Any]:
            before = (old or {}).get("version")
            return {"version": replaced, "before": before, "updated_at": now, **audit}

        _update_with_retry(client, settings, alias_key(settings, PREVIOUS), previous_body)


def _review(audit: dict[str, Any]) -> dict[str, Any]:
    """A reviewer's answer belongs on the card too, not only in the audit log."""
    return {"approval": audit["approval"]} if "approval" in audit else {}


def _promote(
    client: Any,
    settings: Settings,
    version: str,
    expected_etag: str | None,
    replaced: str | None,
    reasons: list[str],
    **audit: Any,
) -> PromotionResult:
    """Move the alias or, on a lost race, record a rejection that says who won."""
    try:
        move_champion(client, settings, version, expected_etag, replaced, **audit)
    except ConcurrentUpdateError:
        winner = alias_version(read_alias(client, settings, CHAMPION))
        lost = [
            f"not promoted: the champion alias changed while this run decided (now {winner}); "
            "another promotion or rollback won the race. Re-evaluate against the new champion."
        ]
        set_card_status(client, settings, version, "rejected", **_review(audit))
        event = write_event(
            client, settings, "reject", {"version": version, "reasons": reasons + lost, **audit}
        )
        return PromotionResult(
            promoted=False, reasons=reasons + lost, event_key=event, champion=winner
        )
    promoted_at = datetime.now(UTC).isoformat()
    set_card_status(
        client, settings, version, "promoted", promoted_at=promoted_at, **_review(audit)
    )
    event = write_event(
        client,
        settings,
        "promote",
        {"version": version, "replaced": replaced, "reasons": reasons, **audit},
    )
    return PromotionResult(promoted=True, reasons=reasons, event_key=event, champion=version)


@task
def apply_decision(
    settings: Settings, version: str, decision: Decision, champion: Champion, run_id: str
) -> PromotionResult:
    """Move the champion alias (conditionally) or record the rejection, with its audit event."""
    client = s3_client(settings.s3)
    audit = {"run_id": run_id, **({"approval": decision.approval} if decision.approval else {})}
    if not decision.promote:
        set_card_status(client, settings, version, "rejected", **_review(audit))
        event = write_event(
            client, settings, "reject", {"version": version, "reasons": decision.reasons, **audit}
        )
        return PromotionResult(
            promoted=False,
            reasons=decision.reasons,
            event_key=event,
            champion=champion.model.version,
        )
    return _promote(
        client,
        settings,
        version,
        champion.alias_etag,
        champion.model.version,
        decision.reasons,
        **audit,
    )


# Operations a person runs from `retrain registry` --------------------------------------------


def promote_version(settings: Settings, version: str, reason: str, by: str) -> PromotionResult:
    """Make a registered version champion by hand (e.g. after reviewing a rejected one)."""
    client = s3_client(settings.s3)
    read_card(client, settings, version)
    alias = read_alias(client, settings, CHAMPION)
    current = alias_version(alias)
    if current == version:
        raise RegistryError(f"version {version} is already the champion; nothing to do")
    return _promote(client, settings, version, alias.etag, current, [reason], by=by, manual=True)


def rollback(settings: Settings, reason: str, by: str) -> PromotionResult:
    """Move `champion` back to `previous`, audited; `previous` steps one further back."""
    client = s3_client(settings.s3)
    champion = read_alias(client, settings, CHAMPION)
    previous = read_alias(client, settings, PREVIOUS)
    bad, target = alias_version(champion), alias_version(previous)
    if bad is None or target is None:
        raise RegistryError(
            f"nothing to roll back to: champion is {bad!r}, previous is {target!r}. "
            "Promote a specific version with `retrain registry promote VERSION` instead."
        )
    now = datetime.now(UTC).isoformat()
    audit = {"by": by, "reason": reason, "rolled_back": bad, "updated_at": now}
    put_json_if(
        client,
        settings.s3.bucket,
        alias_key(settings, CHAMPION),
        {"version": target, **audit},
        expected_etag=champion.etag,
    )
    before = (previous.body or {}).get("before")
    put_json_if(
        client,
        settings.s3.bucket,
        alias_key(settings, PREVIOUS),
        {"version": before, "before": None, **audit},
        expected_etag=previous.etag,
    )
    set_card_status(client, settings, bad, "rolled_back", rolled_back_at=now)
    event = write_event(
        client,
        settings,
        "rollback",
        {"version": target, "replaced": bad, "reasons": [reason], "by": by},
    )
    return PromotionResult(promoted=True, reasons=[reason], event_key=event, champion=target)


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every registered version with its status and the aliases pointing at it, oldest first."""
    client = s3_client(settings.s3)
    aliases = {
        name: alias_version(read_alias(client, settings, name)) for name in (CHAMPION, PREVIOUS)
    }
    prefix = layout.versions_prefix(settings.s3, settings.model_name)
    rows = []
    for obj in list_objects(client, settings.s3.bucket, prefix):
        if not obj["Key"].endswith("/card.json") or obj["Key"].count("/") != prefix.count("/") + 1:
            continue
        version = checked_version(obj["Key"][len(prefix) : -len("/card.json")], "a listed key")
        card = read_card(client, settings, version).body
        rows.append(
            {
                "version": version,
                "created_at": card.get("created_at"),
                "status": card.get("status", "unknown"),
                "aliases": [name for name, v in aliases.items() if v == version],
                "base_model": card.get("base_model"),
                "dataset_version": (card.get("lineage") or {}).get("dataset_version"),
            }
        )
    return sorted(rows, key=lambda row: str(row["created_at"]))


def history(settings: Settings) -> list[dict[str, Any]]:
    """The audit log: every promote / reject / rollback event, oldest first."""
    client = s3_client(settings.s3)
    keys = [
        o["Key"]
        for o in list_objects(
            client, settings.s3.bucket, layout.events_prefix(settings.s3, settings.model_name)
        )
    ]
    return [get_json(client, settings.s3.bucket, key).body for key in sorted(keys)]
