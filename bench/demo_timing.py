"""Time the demo as a new user meets it: a first run from an empty bucket and an empty model
cache, then a second run with no new logs. Checks the issue's targets and prints the figures.

    .venv/bin/python bench/demo_timing.py            # or: make bench
    .venv/bin/python bench/demo_timing.py --keep-cache   # skip the one-off GGUF conversion

Targets: first run ≤ 15 min and the promoted model beats the base model on the golden set's
primary metric; second run ≤ 60 s and skips ingest and training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_RUN_LIMIT_S = 15 * 60
RERUN_LIMIT_S = 60


def timed_demo(state_dir: Path, env: dict[str, str]) -> tuple[float, dict]:
    retrain = Path(sys.executable).with_name("retrain")
    started = time.perf_counter()
    done = subprocess.run(
        [str(retrain), "demo", "--json", "--state-dir", str(state_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"demo failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return seconds, json.loads(done.stdout[done.stdout.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="Reuse the user's model cache instead of an empty one.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/demo_timing.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp:
        env = {**os.environ}
        for name in [n for n in env if n.startswith("RETRAIN_")]:
            del env[name]  # embedded defaults only
        if not args.keep_cache:
            env["RETRAIN_CACHE_DIR"] = str(Path(tmp) / "cache")
        state = Path(tmp) / "s3"
        first_s, first = timed_demo(state, env)
        second_s, second = timed_demo(state, env)

    metrics = first.get("metrics", {}).get("golden", {})
    recent = first.get("metrics", {}).get("recent", {})
    base_loss = metrics.get("incumbent", {}).get("loss")
    tuned_loss = metrics.get("challenger", {}).get("loss")
    results = {
        "first_run_s": round(first_s, 1),
        "first_run_decision": first["decision"],
        "golden_loss_base": base_loss,
        "golden_loss_promoted": tuned_loss,
        "golden_token_accuracy_base": metrics.get("incumbent", {}).get("token_accuracy"),
        "golden_token_accuracy_promoted": metrics.get("challenger", {}).get("token_accuracy"),
        "recent_loss_base": recent.get("incumbent", {}).get("loss"),
        "recent_loss_promoted": recent.get("challenger", {}).get("loss"),
        "train_steps": first.get("train_steps"),
        "train_seconds": first.get("train_seconds"),
        "records_read": first["records_read"],
        "records_curated": first["records_curated"],
        "records_quarantined": first["records_quarantined"],
        "second_run_s": round(second_s, 1),
        "second_run_decision": second["decision"],
        "fresh_model_cache": not args.keep_cache,
    }
    checks = {
        "first run ≤ 15 min": first_s <= FIRST_RUN_LIMIT_S,
        "promoted model beats base on golden loss": first["decision"] == "promoted"
        and tuned_loss is not None
        and tuned_loss < base_loss,
        "second run ≤ 60 s": second_s <= RERUN_LIMIT_S,
        "second run skipped ingest and training": second["decision"] == "no_new_data",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "checks": checks}, indent=2))
    for name, value in results.items():
        print(f"{name:32} {value}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
