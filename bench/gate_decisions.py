"""Does the promotion gate decide right? Scenarios built from real SmolLM2-135M fine-tunes.

    .venv/bin/python bench/gate_decisions.py [--eval-examples 200] [--steps 30]

Models (LoRA adapters trained here with TRL, cached in --work-dir so a re-run only scores):
`base` (SmolLM2-135M), `tuned` (all categories, seed 0), `tuned-seed1` (same data, seed 1),
`specialist` (only the eval set's largest category). All are scored once on the same held-out
Bitext conversations with tasks/evaluate/scoring.py; each scenario runs tasks/promote/policy.py's
`decide` with
the default PromotionSettings on a (challenger, champion) pair of those per-example scores:

| scenario                           | challenger   | champion    | right decision        |
| better                             | tuned        | base        | promote               |
| worse                              | base         | tuned       | reject                |
| better on average, much worse on 1 | tuned        | specialist  | reject (slice rule)   |
| within noise                       | tuned-seed1  | tuned       | reject                |
| the same model twice               | tuned        | tuned       | reject                |

Appends an entry to bench/results.json, prints a markdown table, writes the scenario charts
to bench/figures/.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

from record import save_figures

from tasks.config import EvaluationSettings, PromotionSettings, Settings, apply_runtime_env

HERE = Path(__file__).parent
SCENARIOS = [
    ("better", "tuned", "base", True),
    ("worse", "base", "tuned", False),
    ("better on average, much worse on one category", "tuned", "specialist", False),
    ("within noise", "tuned-seed1", "tuned", False),
    ("the same model twice", "tuned", "tuned", False),
]


def examples(eval_count: int, train_count: int) -> tuple[list[dict], list[dict]]:
    """Held-out and training chat examples from disjoint Bitext conversations."""
    from tasks.ingest.sample_data import build_daily_logs, bundled_csv
    from tasks.prepare.dataset import to_chat_example, with_metadata

    records = build_daily_logs(bundled_csv(), days=1, end_date=date(2026, 1, 1))[date(2026, 1, 1)]
    prompt = Settings().dataset.system_prompt
    chats = [with_metadata(r, to_chat_example(r, prompt)) for r in records]
    return chats[:eval_count], chats[eval_count : eval_count + train_count]


def train_adapter(
    base_dir: Path, rows: list[dict], steps: int, seed: int, out: Path, lr: float | None
) -> Path:
    """A LoRA adapter with the product's TRL/PEFT settings (tasks/train/local.py)."""
    if (out / "adapter_model.safetensors").exists():
        return out
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from tasks.train.local import detect_hardware, lora_config, sft_config, to_prompt_completion

    training = Settings().training.model_copy(
        update={"max_steps": steps, "seed": seed, "batch_size": 4, "max_length": 256}
    )
    if lr:
        training = training.model_copy(update={"learning_rate": lr})
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, use_safetensors=True
    )
    data = Dataset.from_list([to_prompt_completion(r) for r in rows]).shuffle(seed=seed)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(training, out, detect_hardware(training), steps, validate=False),
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=lora_config(training),
    )
    trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--train-examples", type=int, default=800)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: training's")
    parser.add_argument(
        "--model",
        choices=["smollm2", "tiny"],
        default="smollm2",
        help="`tiny`: the test suite's 2-layer random model with the real SmolLM2 tokenizer, "
        "for a CPU shared with other work",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "retrain-gate"
    )
    args = parser.parse_args()
    apply_runtime_env()

    from flows.reports.evaluation import slice_chart
    from tasks.evaluate.aggregate import GOLDEN, ModelRef, build_report, compare, load_model
    from tasks.evaluate.scoring import score_examples
    from tasks.promote.policy import decide
    from tasks.train.base_model import SMOLLM2, build_tiny_model, resolve_base_model

    held_out, train = examples(args.eval_examples, args.train_examples)
    largest = Counter(e["metadata"]["category"] for e in held_out).most_common(1)[0][0]
    base_dir = resolve_base_model(SMOLLM2, Settings().cache_dir)
    work_dir = args.work_dir / args.model
    lr = args.learning_rate
    if args.model == "tiny":
        base_dir = build_tiny_model(base_dir, work_dir / "base")
    adapters = {
        "base": None,
        "tuned": train_adapter(base_dir, train, args.steps, 0, work_dir / "tuned", lr),
        "tuned-seed1": train_adapter(base_dir, train, args.steps, 1, work_dir / "seed1", lr),
        "specialist": train_adapter(
            base_dir,
            [e for e in train if e["metadata"]["category"] == largest],
            args.steps,
            0,
            work_dir / f"specialist-{largest}",
            lr,
        ),
    }
    config = EvaluationSettings(max_length=384, max_new_tokens=8, batch_size=8)
    reports = {}
    for name, adapter in adapters.items():
        ref = ModelRef(
            label=name,
            base_model_dir=str(base_dir),
            adapter_dir=str(adapter) if adapter else None,
            base_model=args.model,
        )
        rows = score_examples(load_model(ref), held_out, config)
        reports[name] = build_report(ref, GOLDEN, rows, held_out, sample_size=0)
        print(f"scored {name}: loss {reports[name].overall.loss}", flush=True)

    policy = PromotionSettings()
    (HERE / "figures").mkdir(exist_ok=True)
    table = []
    for scenario, challenger, champion, expected in SCENARIOS:
        pair = compare({GOLDEN: reports[challenger]}, {GOLDEN: reports[champion]})
        decision = decide(pair, policy)
        failed = sorted({c.rule for c in decision.checks if not c.passed})
        interval = decision.interval
        table.append(
            {
                "scenario": scenario,
                "challenger": challenger,
                "champion": champion,
                "expected": "promote" if expected else "reject",
                "decision": "promote" if decision.promote else "reject",
                "right": decision.promote == expected,
                "loss_improvement": interval.improvement,
                "interval": [interval.low, interval.high],
                "failed_rules": failed,
                "worst_slice": min(decision.slices.items(), key=lambda kv: kv[1].improvement)[0],
            }
        )
        png = slice_chart(interval, decision.slices, f"{scenario}: {challenger} vs {champion}")
        (HERE / "figures" / f"gate-{scenario.split(',')[0].replace(' ', '-')}.png").write_bytes(png)

    entry = {
        "bench": "gate_decisions",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "held_out_examples": len(held_out),
        "specialist_category": largest,
        "model": args.model,
        "train_steps": args.steps,
        "learning_rate": args.learning_rate,
        "all_right": all(row["right"] for row in table),
        "scenarios": table,
    }
    save_figures("gate_decisions", entry)
    print(
        "| scenario | challenger vs champion | loss improvement [95% CI] | failed rules "
        "| decision | right |\n|---|---|---|---|---|---|"
    )
    for row in table:
        low, high = row["interval"]
        print(
            f"| {row['scenario']} | {row['challenger']} vs {row['champion']} | "
            f"{row['loss_improvement']:+.4f} [{low:+.4f}, {high:+.4f}] | "
            f"{', '.join(row['failed_rules']) or '-'} | {row['decision']} | "
            f"{'yes' if row['right'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
