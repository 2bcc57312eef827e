"""Continuous retraining on a window against training on the whole week at once (issue 6).

A week of Bitext conversations is split into six earlier days and a quiet seventh day of 60 new
conversations. Three LoRA runs on the packaged SmolLM2-135M, each one epoch over what it trains
on, the same settings, scored on the same frozen golden set (teacher-forced answer
loss, token-weighted), against a local moto S3 server:

    window      day 7's dataset version as the new batch, days 1-6 replayed by the window
    whole week  one dataset version holding all seven days, no replay
    new only    day 7's 60 conversations alone (what the walking skeleton trained on)

    .venv/bin/python bench/window_vs_week.py                     # 40 a day, 60 on day 7
    .venv/bin/python bench/window_vs_week.py --per-day 20 --seeds 3

Each kind runs with `--seeds` training seeds. The trainer takes the window's examples in content
order (tasks/prepare/window.py:in_content_order), so with one seed the window and the whole week,
the
same 180 examples, should train the same adapter: the bench records whether the two golden
losses are equal seed by seed. Target: the window's mean golden loss is at most the whole
week's. Writes the `window_vs_week` entry of bench/results.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from record import save_figures
from train_throughput import bitext_examples

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
DAYS = 7
NEW_ON_LAST_DAY = 60
GOLDEN = 64


def golden_loss(settings, adapter_dir: str | None, base_dir: Path, golden: list[dict]) -> float:
    from tasks.evaluate.aggregate import ModelRef, load_model
    from tasks.evaluate.scoring import teacher_forced

    ref = ModelRef(label="bench", base_model_dir=str(base_dir), adapter_dir=adapter_dir)
    scored = teacher_forced(load_model(ref), golden, 8, settings.training.max_length)
    return round(sum(s[0] for s in scored) / sum(s[2] for s in scored), 4)


def train(settings, dataset, window, run_id: str) -> dict:
    from tasks.train.local import train_local

    started = time.perf_counter()
    result = train_local.fn(settings, dataset, run_id, window)
    return {
        "adapter_dir": result.adapter_dir,
        "base_dir": result.base_model_dir,
        "examples": result.train_examples,
        "steps": result.steps,
        "versions": len(result.dataset_versions),
        "train_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=40, help="conversations on days 1-6")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per run kind")
    args = parser.parse_args()

    from tasks.config import Settings, apply_runtime_env
    from tasks.prepare.window import build_window, single_version_window
    from tasks.storage.local_server import moto_server
    from tasks.storage.s3 import ensure_bucket, s3_client
    from tests.helpers.datasets import put_version, ref

    apply_runtime_env()
    earlier = args.per_day * (DAYS - 1)
    pool = bitext_examples(GOLDEN + earlier + NEW_ON_LAST_DAY + 8)
    golden, validation = pool[:GOLDEN], pool[GOLDEN : GOLDEN + 8]
    week = pool[GOLDEN + 8 :]
    days = [week[d * args.per_day : (d + 1) * args.per_day] for d in range(DAYS - 1)]
    days.append(week[earlier:])
    figures: dict = {"per_day": args.per_day, "new_on_last_day": len(days[-1])}

    with moto_server() as endpoint:
        settings = Settings(s3={"bucket": "bench-window", "endpoint_url": endpoint})
        # the product's training defaults, with a budget of one epoch over what each run sees
        training = settings.training.model_copy(
            update={"epochs": 1.0, "max_steps": None, "max_minutes": None}
        )
        settings = settings.model_copy(update={"training": training})
        ensure_bucket(s3_client(settings.s3), settings.s3.bucket)

        def version(name: str, age_days: int, rows: list[dict]):
            prefix = put_version(settings, name, timedelta(days=age_days), rows, validation)
            return ref(settings, name, prefix, golden_key="")

        days_refs = [version(f"day-{d + 1}", DAYS - 1 - d, rows) for d, rows in enumerate(days)]
        window = build_window.fn(settings, days_refs[-1])
        # written after the window is built, so the window cannot replay it
        whole = version("whole-week", 0, week)
        runs = {
            "window": (days_refs[-1], window),
            "whole_week": (whole, single_version_window(whole)),
            "new_only": (days_refs[-1], single_version_window(days_refs[-1])),
        }
        base_dir = None
        for seed in range(args.seeds):
            seeded = settings.model_copy(
                update={"training": training.model_copy(update={"seed": training.seed + seed})}
            )
            for name, (dataset, trained_on) in runs.items():
                run = train(seeded, dataset, trained_on, f"bench-{name}-{seed}")
                base_dir = run.pop("base_dir")
                adapter = run.pop("adapter_dir")
                run["golden_loss"] = golden_loss(settings, adapter, base_dir, golden)
                figures.setdefault(name, {"runs": []})["runs"].append(run)
                print(name, seed, run, flush=True)
        figures["base_golden_loss"] = golden_loss(settings, None, base_dir, golden)

    for name in runs:
        losses = [run["golden_loss"] for run in figures[name]["runs"]]
        figures[name]["golden_loss_mean"] = round(statistics.mean(losses), 4)
    window = figures["window"]["golden_loss_mean"]
    whole = figures["whole_week"]["golden_loss_mean"]
    figures["window_minus_whole_week"] = round(window - whole, 4)
    figures["same_loss_every_seed"] = all(
        a["golden_loss"] == b["golden_loss"]
        for a, b in zip(figures["window"]["runs"], figures["whole_week"]["runs"], strict=True)
    )
    figures["load_average"] = os.getloadavg()
    print({k: v for k, v in figures.items() if not isinstance(v, dict)})
    print({name: figures[name]["golden_loss_mean"] for name in runs})
    save_figures("window_vs_week", figures)


if __name__ == "__main__":
    main()
