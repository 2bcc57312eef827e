"""The training window: new batch + replay of earlier dataset versions, deduplicated, golden-free,
newest first, within the policy's age and size limits; recorded in the manifest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from safetensors.torch import load_file
from transformers import AutoTokenizer

from tasks.config import DatasetSettings, WindowSettings
from tasks.prepare.dataset import DatasetRef
from tasks.prepare.golden import frozen_from_examples, manifest_for
from tasks.prepare.window import (
    build_window,
    load_window_examples,
    replay_candidates,
    select_examples,
)
from tasks.storage.s3 import get_json, s3_client
from tasks.train.local import train_local
from tests.helpers.datasets import NOW, chat, examples, put_golden, put_version, ref


def week_of_versions(settings) -> tuple[DatasetRef, dict[str, list]]:
    """Three earlier daily versions, one too old, a golden set, a tiny new batch."""
    days = {
        "ds-day1": examples("d1", 12),
        "ds-day3": examples("d3", 10),
        "ds-day6": examples("d6", 8),
        "ds-old": examples("old", 9),
    }
    ages = {"ds-day1": 1, "ds-day3": 3, "ds-day6": 6, "ds-old": 20}
    new = examples("new", 3)
    # the new batch repeats a day-3 conversation; day 6 holds one the golden set protects
    new.append(days["ds-day3"][0])
    days["ds-day6"][2] = chat("Can I still change the delivery address?", "Yes, until it ships.")
    protected = days["ds-day6"][2]["messages"]
    golden = [
        {
            "messages": [
                m | {"content": "another answer"} if m["role"] == "assistant" else m
                for m in protected
            ]
        }
    ]
    golden_key = put_golden(settings, golden)
    for version, rows in days.items():
        put_version(settings, version, timedelta(days=ages[version]), rows, rows[:2])
    prefix = put_version(settings, "ds-new", timedelta(0), new, examples("newval", 2))
    return ref(settings, "ds-new", prefix, golden_key), days


def test_select_keeps_newest_copy_drops_golden_and_caps_replay():
    new, older = examples("a", 3), examples("b", 5)
    older[0] = new[1]  # duplicate: the new batch's copy wins
    rows = [{**older[2], "metadata": {"conversation_id": "g0"}}]
    frozen = frozen_from_examples(rows, manifest_for(DatasetSettings(), 1, "test"))
    kept, duplicates, golden = select_examples([new, older], frozen, replay_cap=2)
    assert kept[0] == new
    assert kept[1] == [older[1], older[3]]  # older[2] is golden, the cap stops at two
    assert (duplicates, golden) == (1, 1)


def test_policy_limits_age_and_can_turn_replay_off():
    manifests = [
        {"version": v, "created_at": (NOW - timedelta(days=d)).isoformat()}
        for v, d in (("new", 0), ("d2", 2), ("d9", 9), ("d1", 1))
    ]
    picked = replay_candidates(manifests, "new", NOW, WindowSettings(replay_days=7))
    assert [m["version"] for m in picked] == ["d1", "d2"]  # newest first, d9 too old
    everything = replay_candidates(manifests, "new", NOW, WindowSettings(replay_days=None))
    assert [m["version"] for m in everything] == ["d1", "d2", "d9"]
    assert replay_candidates(manifests, "new", NOW, WindowSettings(replay_days=0)) == []
    assert replay_candidates(manifests, "new", NOW, WindowSettings(replay_max_examples=0)) == []


def test_window_replays_the_week_and_records_it_in_the_manifest(settings):
    dataset, days = week_of_versions(settings)

    window = build_window.fn(settings, dataset)

    assert [v.version for v in window.versions] == ["ds-new", "ds-day1", "ds-day3", "ds-day6"]
    assert [v.examples for v in window.versions] == [4, 12, 9, 7]  # day-3 dup, day-6 golden
    assert (window.duplicates_dropped, window.golden_dropped) == (1, 1)
    assert window.train_examples == 32 and window.replayed_examples == 28
    manifest = get_json(
        s3_client(settings.s3), settings.s3.bucket, dataset.prefix + "manifest.json"
    )
    assert [v["version"] for v in manifest.body["window"]["versions"]] == [
        "ds-new",
        "ds-day1",
        "ds-day3",
        "ds-day6",
    ]

    train, validation = load_window_examples(settings, window)
    assert len(train) == window.train_examples
    assert train[:4] == [{"messages": e["messages"]} for e in examples("new", 3)] + [
        {"messages": days["ds-day3"][0]["messages"]}
    ]
    assert len(validation) == 2 + 2 + 2 + 2  # new batch's first, then each replayed version's


def test_replay_cap_takes_newest_versions_first(settings):
    settings = settings.model_copy(
        update={
            "training": settings.training.model_copy(
                update={"window": WindowSettings(replay_max_examples=15)}
            )
        }
    )
    dataset, _ = week_of_versions(settings)

    window = build_window.fn(settings, dataset)

    assert [(v.version, v.examples) for v in window.versions] == [
        ("ds-new", 4),
        ("ds-day1", 12),
        ("ds-day3", 3),
    ]


def test_a_tiny_new_batch_trains_on_the_whole_window(settings, tiny_model_dir):
    training = settings.training.model_copy(
        update={
            "base_model": str(tiny_model_dir),
            "max_steps": None,
            "epochs": 1.0,
            "max_length": 64,
            "eval_steps": 4,
        }
    )
    settings = settings.model_copy(update={"training": training})
    dataset, _ = week_of_versions(settings)
    window = build_window.fn(settings, dataset)

    result = train_local.fn(settings, dataset, "pytest-window", window)

    # 4 new examples alone would be one step of 4; the window holds 32
    assert (result.train_examples, result.steps, result.examples_seen) == (32, 8, 32)
    assert result.fraction_seen == 1.0
    assert result.dataset_versions == ["ds-new", "ds-day1", "ds-day3", "ds-day6"]
    assert [step for step, _ in result.val_curve] == [4, 8]
    train, _ = load_window_examples(settings, window)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = [tokenizer.apply_chat_template(e["messages"], tokenize=False) for e in train]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in rendered]
    assert result.truncated_examples == sum(n > 64 for n in lengths) > 0
    files = {p.name for p in Path(result.adapter_dir).iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= files
    assert not any(Path(name).suffix in {".bin", ".pt", ".pth", ".pkl"} for name in files)
    card = (Path(result.adapter_dir) / "README.md").read_text()
    assert "base_model: " in card and "| ds-day6 |" in card
    adapter = load_file(Path(result.adapter_dir) / "adapter_model.safetensors")
    assert all(w.abs().sum() > 0 for k, w in adapter.items() if "lora_B" in k)  # trained


def test_the_same_examples_train_the_same_adapter_as_one_version_or_seven(settings, tiny_model_dir):
    """A window is only a way to gather examples: the model must not depend on how they were
    split into versions or in which order the versions were read."""
    training = settings.training.model_copy(
        update={"base_model": str(tiny_model_dir), "max_steps": 3, "epochs": None}
    )
    settings = settings.model_copy(update={"training": training})
    week, validation = examples("week", 21), examples("val", 2)
    days = [
        ref(
            settings,
            f"day-{d}",
            put_version(
                settings, f"day-{d}", timedelta(days=7 - d), week[d * 3 : d * 3 + 3], validation
            ),
            "",
        )
        for d in range(7)
    ]
    whole_prefix = put_version(settings, "whole", timedelta(days=8), week[::-1], validation)
    whole = ref(settings, "whole", whole_prefix, "")
    window = build_window.fn(settings, days[-1])
    assert len(window.versions) == 7

    adapters = [
        load_file(Path(result.adapter_dir) / "adapter_model.safetensors")
        for result in (
            train_local.fn(settings, days[-1], "pytest-window-seven", window),
            train_local.fn(settings, whole, "pytest-window-one", None),
        )
    ]
    assert adapters[0].keys() == adapters[1].keys()
    assert all((adapters[0][k] == adapters[1][k]).all() for k in adapters[0])
    assert any(w.abs().sum() > 0 for k, w in adapters[0].items() if "lora_B" in k)
