"""Batched greedy generation vs one prompt at a time, side by side in one process.

    .venv/bin/python bench/generation_speed.py                       # SmolLM2-135M, 500 examples
    .venv/bin/python bench/generation_speed.py --sequential-limit 100  # time-boxed CPU run

Both sides use tasks/evaluate/scoring.py's `generate_ids` on the same chat examples (Bitext sample,
the
production system prompt); one-at-a-time is the same call with batch size 1. With
`--sequential-limit N` the one-at-a-time side runs on the first N examples only (it is the slow
side; its examples/s does not depend on how many it runs) and the batched side runs on all of
them AND on those same N, so the ratio is also shown on identical work.
Target: batched ≥ 4x the examples/s of one-at-a-time. Appends an entry to bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime

from record import save_figures

TARGET_SPEEDUP = 4.0


def chat_examples(count: int) -> list[list[dict[str, str]]]:
    from tasks.config import Settings
    from tasks.ingest.sample_data import build_daily_logs, bundled_csv
    from tasks.prepare.dataset import to_chat_example

    per_day = build_daily_logs(bundled_csv(), days=1, end_date=datetime.now(UTC).date())
    records = next(iter(per_day.values()))[:count]
    prompt = Settings().dataset.system_prompt
    return [to_chat_example(r, prompt)["messages"] for r in records]


def timed(local, conversations, batch_size: int, max_new_tokens: int) -> tuple[float, list]:
    from tasks.evaluate.scoring import generate_ids

    started = time.perf_counter()
    ids = generate_ids(local, conversations, batch_size, max_new_tokens, max_length=1024)
    return time.perf_counter() - started, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--sequential-limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--model", default="smollm2", help="`smollm2` or a model directory")
    args = parser.parse_args()

    import torch

    from tasks.config import Settings, apply_runtime_env
    from tasks.evaluate.aggregate import ModelRef, load_model
    from tasks.train.base_model import SMOLLM2, resolve_base_model

    apply_runtime_env()
    name = SMOLLM2 if args.model == "smollm2" else args.model
    local = load_model(
        ModelRef(label=name, base_model_dir=str(resolve_base_model(name, Settings().cache_dir)))
    )
    conversations = chat_examples(args.examples)
    limit = min(args.sequential_limit or len(conversations), len(conversations))
    timed(local, conversations[:2], 2, 2)  # warm-up: first-call allocation and kernel setup

    one_s, one_ids = timed(local, conversations[:limit], 1, args.max_new_tokens)
    same_s, same_ids = timed(local, conversations[:limit], args.batch_size, args.max_new_tokens)
    all_s, _ = timed(local, conversations, args.batch_size, args.max_new_tokens)
    # greedy decoding with left padding must say the same thing batched or not
    agree = sum(a == b for a, b in zip(one_ids, same_ids, strict=True)) / limit

    entry = {
        "bench": "batched_generation",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "device": "cuda"
        if torch.cuda.is_available()
        else f"cpu ({torch.get_num_threads()} threads)",
        "machine": platform.machine(),
        "examples": len(conversations),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "one_at_a_time": {
            "examples": limit,
            "seconds": round(one_s, 2),
            "examples_per_s": round(limit / one_s, 2),
        },
        "batched_same_examples": {
            "examples": limit,
            "seconds": round(same_s, 2),
            "examples_per_s": round(limit / same_s, 2),
        },
        "batched_all": {
            "examples": len(conversations),
            "seconds": round(all_s, 2),
            "examples_per_s": round(len(conversations) / all_s, 2),
        },
        "speedup_same_examples": round(one_s / same_s, 2),
        "speedup_examples_per_s": round((len(conversations) / all_s) / (limit / one_s), 2),
        "identical_replies": round(agree, 3),
        "target_speedup": TARGET_SPEEDUP,
    }
    entry["passed"] = (
        min(entry["speedup_same_examples"], entry["speedup_examples_per_s"]) >= TARGET_SPEEDUP
    )
    save_figures("generation_speed", entry)
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
