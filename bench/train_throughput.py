"""Training throughput of our trainer against TRL's SFTTrainer, side by side in one run.

Same model (SmolLM2-135M, LoRA r=16 all-linear), same Bitext examples, same steps and batch for
every variant; each variant runs in its own subprocess (so its peak host memory is its own) and
the variants are interleaved round by round, so load from other processes on a shared machine
hits every side alike. Reports non-padding tokens/s (median over rounds) and writes entries to
bench/results.json (merged: other benches' entries are kept).

    .venv/bin/python bench/train_throughput.py                  # 2 rounds, 5 steps x 8 examples
    .venv/bin/python bench/train_throughput.py --rounds 3 --steps 5

Targets: ours ≥ 2x TRL defaults (bf16=False on CPU, docs/design.md) and ≥ 1.5x the fastest of
TRL's
packing on/off x gradient checkpointing on/off; peak host memory ≤ 4 GB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from record import save_figures

ROOT = Path(__file__).resolve().parents[1]
# name → (packing, gradient_checkpointing); None = ours
VARIANTS: dict[str, tuple[bool, bool] | None] = {
    "trl_default": (False, True),  # TRL's defaults: no packing, gradient checkpointing on
    "trl_packing_gc": (True, True),
    "trl_nopacking_nogc": (False, False),
    "trl_packing_nogc": (True, False),
    "ours": None,
    "ours_peft_lora": None,  # ours with PEFT's own LoRA layers (tasks/train/fused_lora.py's share)
}
MEMORY_LIMIT_MB = 4096


def bitext_examples(count: int) -> list[dict]:
    """`count` Bitext conversations spread over the file (all intents), in chat format."""
    from tasks.config import DatasetSettings
    from tasks.ingest.sample_data import bundled_csv, row_to_record
    from tasks.prepare.dataset import to_chat_example

    with bundled_csv().open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    stride = len(rows) // count
    at = datetime(2026, 11, 21, tzinfo=UTC)
    prompt = DatasetSettings().system_prompt
    return [
        to_chat_example(row_to_record(i, rows[i], at), prompt)
        for i in range(0, stride * count, stride)
    ]


def counting(collator, counter: dict[str, int]):
    """Wrap a data collator to count the non-padding tokens each batch carries."""

    def collate(features):
        batch = collator(features)
        mask = batch.get("attention_mask")
        counter["tokens"] += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        return batch

    return collate


def run_variant(name: str, steps: int, batch: int, max_length: int, out_dir: Path) -> dict:
    """One variant in this process: build, train `steps` steps, time train() only."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from tasks.config import Settings, TrainingSettings
    from tasks.train.base_model import SMOLLM2, resolve_base_model
    from tasks.train.local import (
        build_trainer,
        load_base,
        plan_hardware,
        prepare_model,
        to_prompt_completion,
    )

    torch.manual_seed(0)
    training = TrainingSettings(
        max_steps=steps, batch_size=batch, max_length=max_length, epochs=None
    )
    base_dir = resolve_base_model(SMOLLM2, Settings().cache_dir)
    examples = bitext_examples(steps * batch)
    plan = plan_hardware(training, cuda=False, bf16_supported=False, flash_attention=False)
    model, tokenizer = load_base(base_dir, plan)
    if VARIANTS[name] is None:
        model, peft_config = prepare_model(model, training, None)
        if name == "ours_peft_lora":
            from tasks.train.local import lora_config

            peft_config = lora_config(training)
        trainer = build_trainer(
            training, plan, model, tokenizer, examples, [], out_dir, steps, peft_config
        )
    else:
        from tasks.train.local import lora_config

        packing, checkpointing = VARIANTS[name]
        args = SFTConfig(
            output_dir=str(out_dir),
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=training.learning_rate,
            max_length=max_length,
            # the one device fix docs/design.md allows: these CPUs have no native bf16
            bf16=False,
            packing=packing,
            gradient_checkpointing=checkpointing,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list([to_prompt_completion(e) for e in examples]),
            processing_class=tokenizer,
            peft_config=lora_config(training),
        )
        trainer.remove_callback(PrinterCallback)
    counter = {"tokens": 0}
    trainer.data_collator = counting(trainer.data_collator, counter)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {
        "variant": name,
        "tokens": counter["tokens"],
        "seconds": round(seconds, 2),
        "tokens_per_s": round(counter["tokens"] / seconds, 1),
        "steps": trainer.state.global_step,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }


def run_child(name: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--max-length",
            str(args.max_length),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds per variant.")
    parser.add_argument("--steps", type=int, default=5, help="Optimizer steps per variant.")
    parser.add_argument("--batch", type=int, default=8, help="Examples per step.")
    parser.add_argument("--max-length", type=int, default=160, help="Tokens per example.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated subset.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        from tasks.config import apply_runtime_env

        apply_runtime_env()
        with tempfile.TemporaryDirectory() as tmp:
            result = run_variant(args.child, args.steps, args.batch, args.max_length, Path(tmp))
        print(json.dumps(result))
        return

    names = args.variants.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        # rotate the order each round so no variant always runs first or last
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            result = run_child(name, args)
            runs[name].append(result)
            print(
                f"round {round_index + 1} {name:20} {result['tokens_per_s']:7.1f} tokens/s "
                f"({result['tokens']} tokens, {result['seconds']} s, "
                f"peak {result['peak_rss_mb']:.0f} MB)",
                flush=True,
            )

    median = {n: statistics.median(r["tokens_per_s"] for r in rs) for n, rs in runs.items()}
    setup = (
        f"SmolLM2-135M LoRA r=16 all-linear, {args.steps} steps x {args.batch} Bitext examples, "
        f"max_length {args.max_length}, CPU fp32, {args.rounds} interleaved rounds, median"
    )
    entries: dict[str, dict] = {}
    for name, rs in runs.items():
        entries[f"train_throughput {name}"] = {
            "tokens_per_s": median[name],
            "runs_tokens_per_s": [r["tokens_per_s"] for r in rs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "setup": setup,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    checks = {}
    if "ours" in median and "trl_default" in median:
        trl_names = [n for n in median if n.startswith("trl_")]
        fastest = max(trl_names, key=median.get)
        ratio_default = median["ours"] / median["trl_default"]
        ratio_fastest = median["ours"] / median[fastest]
        peak = max(r["peak_rss_mb"] for r in runs["ours"])
        entries["train_throughput ours vs TRL default"] = {
            "ours_tokens_per_s": median["ours"],
            "trl_default_tokens_per_s": median["trl_default"],
            "ratio": round(ratio_default, 2),
            "fastest_trl_variant": fastest,
            "fastest_trl_tokens_per_s": median[fastest],
            "ratio_vs_fastest_trl": round(ratio_fastest, 2),
            "ours_peak_rss_mb": peak,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "setup": setup,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        checks = {
            "ours ≥ 2x TRL default": ratio_default >= 2.0,
            f"ours ≥ 1.5x fastest TRL ({fastest})": ratio_fastest >= 1.5,
            "peak host memory ≤ 4 GB": peak <= MEMORY_LIMIT_MB,
        }
        entries["train_throughput ours vs TRL default"]["checks"] = checks
    for key, figures in entries.items():
        save_figures(key, figures)
    for name in runs:
        print(f"{name:20} median {median[name]:7.1f} tokens/s")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
