"""Registry storage: collision-free versions, aliases that cannot race, safe downloads, rollback."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.evaluate.aggregate import ModelRef
from tasks.promote.policy import Decision
from tasks.promote.registry import (
    CHAMPION,
    PREVIOUS,
    Champion,
    RegistryError,
    apply_decision,
    current_champion,
    history,
    list_versions,
    load_version,
    model_prefix,
    new_version_id,
    read_alias,
    read_card,
    rollback,
)
from tasks.storage.s3 import download_prefix, put_json, s3_client
from tests.helpers.registry import register

WIN = Decision(promote=True, reasons=["better"])


def alias(settings, name: str = CHAMPION):
    return read_alias(s3_client(settings.s3), settings, name)


def champion_ref(settings) -> Champion:
    """What a run reads before it decides: the alias's version and ETag."""
    found = alias(settings)
    version = (found.body or {}).get("version")
    return Champion(
        model=ModelRef(label=str(version), base_model_dir="x", version=version),
        alias_etag=found.etag,
    )


def status(settings, version: str) -> str:
    return read_card(s3_client(settings.s3), settings, version).body["status"]


def test_version_ids_do_not_collide_within_one_second():
    now = datetime(2026, 11, 21, 10, 4, tzinfo=UTC)
    ids = {new_version_id(now) for _ in range(2000)}
    assert len(ids) == 2000
    assert all(i.startswith("v20261121T100400-") for i in ids)


def test_a_reused_version_id_is_refused_before_any_file_is_overwritten(settings, tmp_path):
    register(settings, "v1", tmp_path / "a")
    with pytest.raises(Exception, match="changed while this run"):
        register(settings, "v1", tmp_path / "b")


@pytest.mark.parametrize("crafted", ["../../escaped.txt", "/etc/escaped.txt", "a/../../x.txt"])
def test_a_crafted_key_never_escapes_the_download_dir(settings, tmp_path, crafted):
    client = s3_client(settings.s3)
    prefix = f"{model_prefix(settings)}versions/v1/adapter/"
    client.put_object(Bucket=settings.s3.bucket, Key=prefix + "adapter_config.json", Body=b"{}")
    client.put_object(Bucket=settings.s3.bucket, Key=prefix + crafted, Body=b"evil")
    target = tmp_path / "deep" / "down" / "local"

    with pytest.raises(ValueError, match="refusing S3 key"):
        download_prefix(client, settings.s3.bucket, prefix, target)

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []  # checked before anything was written, inside or outside
    assert not Path("/etc/escaped.txt").exists()


def test_an_alias_naming_a_path_is_refused(settings):
    put_json(
        s3_client(settings.s3),
        settings.s3.bucket,
        f"{model_prefix(settings)}aliases/{CHAMPION}.json",
        {"version": "../../../tmp"},
    )
    with pytest.raises(RegistryError, match="not a plain version name"):
        current_champion.fn(settings)
    with pytest.raises(RegistryError):
        load_version(settings, "../x")


def test_promotion_moves_champion_and_previous_and_marks_the_card_after(settings, tmp_path):
    for version in ("v1", "v2"):
        register(settings, version, tmp_path)
    assert status(settings, "v1") == "candidate"

    first = apply_decision.fn(settings, "v1", WIN, champion_ref(settings), run_id="r1")
    assert first.promoted and alias(settings).body["version"] == "v1"
    assert status(settings, "v1") == "promoted"
    assert alias(settings, PREVIOUS).body is None

    second = apply_decision.fn(settings, "v2", WIN, champion_ref(settings), run_id="r2")
    assert second.promoted
    assert alias(settings).body["version"] == "v2"
    assert alias(settings, PREVIOUS).body["version"] == "v1"


def test_a_run_that_read_a_stale_champion_is_told_and_rejected(settings, tmp_path):
    for version in ("v1", "v2"):
        register(settings, version, tmp_path)
    stale = champion_ref(settings)  # "no champion yet"
    apply_decision.fn(settings, "v1", WIN, stale, run_id="r1")

    late = apply_decision.fn(settings, "v2", WIN, stale, run_id="r2")

    assert not late.promoted
    assert "another promotion or rollback won the race" in late.reasons[-1]
    assert alias(settings).body["version"] == "v1"
    assert status(settings, "v2") == "rejected"


def test_a_reviewers_answer_is_on_the_card_and_in_the_audit_event(settings, tmp_path):
    for version in ("v1", "v2"):
        register(settings, version, tmp_path)
    approved = {"approved": True, "reviewer": "ana", "comment": "replies read well"}
    refused = {"approved": False, "reviewer": "bo", "comment": "too curt"}

    apply_decision.fn(
        settings, "v1", WIN.model_copy(update={"approval": approved}), champion_ref(settings), "r1"
    )
    refusal = Decision(promote=False, reasons=["rejected at approval"], approval=refused)
    apply_decision.fn(settings, "v2", refusal, champion_ref(settings), "r2")

    client = s3_client(settings.s3)
    assert read_card(client, settings, "v1").body["approval"] == approved
    assert read_card(client, settings, "v2").body["approval"] == refused
    assert [event["approval"] for event in history(settings)[-2:]] == [approved, refused]
    assert history(settings)[-1]["kind"] == "reject"


def test_two_concurrent_promotions_exactly_one_wins(settings, tmp_path):
    register(settings, "v0", tmp_path)
    apply_decision.fn(settings, "v0", WIN, champion_ref(settings), run_id="r0")
    contenders = ["va", "vb"]
    for version in contenders:
        register(settings, version, tmp_path)
    read_before = champion_ref(settings)  # both runs read the same champion, then decide
    start = threading.Barrier(len(contenders))
    results = {}

    def promote(version: str) -> None:
        start.wait()
        results[version] = apply_decision.fn(settings, version, WIN, read_before, run_id=version)

    threads = [threading.Thread(target=promote, args=(v,)) for v in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [v for v, r in results.items() if r.promoted]
    losers = [v for v, r in results.items() if not r.promoted]
    assert len(winners) == 1 and len(losers) == 1
    assert alias(settings).body["version"] == winners[0]
    assert alias(settings, PREVIOUS).body["version"] == "v0"
    assert status(settings, winners[0]) == "promoted" and status(settings, losers[0]) == "rejected"
    events = [(e["kind"], e["version"]) for e in history(settings)]
    assert ("promote", winners[0]) in events and ("reject", losers[0]) in events


def test_rollback_restores_previous_with_an_audit_event(settings, tmp_path):
    for version in ("v1", "v2", "v3"):
        register(settings, version, tmp_path)
        apply_decision.fn(settings, version, WIN, champion_ref(settings), run_id=version)
    assert alias(settings, PREVIOUS).body["version"] == "v2"

    result = rollback(settings, reason="v3 answers refunds wrongly", by="alice")

    assert result.champion == "v2" and alias(settings).body["version"] == "v2"
    assert alias(settings, PREVIOUS).body["version"] == "v1"  # one further back
    assert status(settings, "v3") == "rolled_back"
    event = history(settings)[-1]
    assert event["kind"] == "rollback" and event["by"] == "alice"
    assert event["reasons"] == ["v3 answers refunds wrongly"] and event["replaced"] == "v3"
    rows = {row["version"]: row for row in list_versions(settings)}
    assert rows["v2"]["aliases"] == [CHAMPION] and rows["v1"]["aliases"] == [PREVIOUS]

    rollback(settings, reason="again", by="alice")
    assert alias(settings).body["version"] == "v1"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(settings, reason="once more", by="alice")


def test_rejection_leaves_the_alias_and_writes_an_audit_event(settings, tmp_path):
    for version in ("v1", "v2"):
        register(settings, version, tmp_path)
    apply_decision.fn(settings, "v1", WIN, champion_ref(settings), run_id="r1")
    before = alias(settings)

    result = apply_decision.fn(
        settings, "v2", Decision(promote=False, reasons=["worse"]), champion_ref(settings), "r2"
    )

    assert not result.promoted and result.champion == "v1"
    assert alias(settings) == before
    assert result.event_key.endswith("-reject.json")
    assert history(settings)[-1]["reasons"] == ["worse"]
    assert status(settings, "v2") == "rejected"
