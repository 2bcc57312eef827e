"""Drift monitor targets (issue 10): are the verdicts right, and how fast is the monitor?

    PYTHONPATH=. .venv/bin/python bench/drift_bench.py            # both parts
    PYTHONPATH=. .venv/bin/python bench/drift_bench.py --skip-monitor   # verdicts only

1. Verdicts on pairs built from the bundled Bitext sample and from text varied here: two random
   halves of one dataset (20 trials, at most one false alarm), a window where one category
   triples, agent replies rewritten shorter or in a formal style, typo-heavy customer text.
2. The monitor flow (real Prefect, moto S3) on 10,000 recent conversations, embeddings included,
   with the real SmolLM2 as the champion: ≤ 120 s; where the time goes (Prefect task run times).

Prints a Markdown table and writes the figures under the key "drift_monitor" of
bench/results.json (other keys are kept).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from record import save_figures, stored

from tasks.config import DriftSettings, Settings, apply_runtime_env, use_settings
from tasks.ingest.sample_data import build_daily_logs, bundled_csv
from tasks.monitor.data_drift import compare_batches

KEY = "drift_monitor"
MONITOR_LIMIT_S = 120
TRIALS = 20
FORMAL = (
    "Dear valued customer, thank you most kindly for contacting our customer care department. ",
    " Should anything remain unclear, kindly reply to this correspondence. Yours faithfully.",
)


def bitext() -> list[dict[str, Any]]:
    per_day = build_daily_logs(bundled_csv(), days=1, end_date=date(2026, 11, 1))
    return [r for records in per_day.values() for r in records]


def halves(records: list[dict[str, Any]], seed: int) -> tuple[list, list]:
    shuffled = random.Random(seed).sample(records, len(records))
    return shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2 :]


def with_agent_text(records: list[dict[str, Any]], rewrite) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "messages": [
                {**m, "text": rewrite(m["text"])} if m["role"] == "agent" else m
                for m in r["messages"]
            ],
        }
        for r in records
    ]


def with_typos(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Customers typing on a phone: a letter dropped or two swapped in most longer words."""
    rng = random.Random(seed)

    def mangle(word: str) -> str:
        if len(word) < 4 or rng.random() < 0.3:
            return word
        k = rng.randrange(1, len(word) - 1)
        return (
            word[:k] + word[k + 1 :]
            if rng.random() < 0.5
            else word[:k] + word[k + 1] + word[k] + word[k + 2 :]
        )

    return [
        {
            **r,
            "messages": [
                {**m, "text": " ".join(mangle(w) for w in m["text"].split())}
                if m["role"] == "customer"
                else m
                for m in r["messages"]
            ],
        }
        for r in records
    ]


def category_tripled(records: list[dict[str, Any]], category: str, size: int, seed: int) -> list:
    """A window of `size` records where `category` is drawn three times as often."""
    rng = random.Random(seed)
    weights = [3.0 if r["category"] == category else 1.0 for r in records]
    return rng.choices(records, weights=weights, k=size)


def verdicts(config: DriftSettings) -> dict[str, Any]:
    records = bitext()
    rows, false_alarms, seconds = [], [], []
    for trial in range(TRIALS):
        a, b = halves(records, seed=trial)
        started = time.perf_counter()
        report = compare_batches(a, b, config)
        seconds.append(time.perf_counter() - started)
        if report.drifted:
            false_alarms.append({"trial": trial, "drifted": report.drifted})
    rows.append(
        {
            "pair": f"two random halves of Bitext ({len(records) // 2} each), {TRIALS} trials",
            "expected": "no drift (≤ 1 false alarm)",
            "drifted": sorted({n for f in false_alarms for n in f["drifted"]}),
            "false_alarms": len(false_alarms),
            "right": len(false_alarms) <= 1,
        }
    )
    reference, rest = halves(records, seed=100)
    share = sum(r["category"] == "REFUND" for r in rest) / len(rest)
    moved = {
        f"REFUND tripled ({share:.0%} → ~{3 * share / (1 + 2 * share):.0%}), 2,000 records": (
            category_tripled(rest, "REFUND", 2000, seed=1),
            {"category_mix"},
        ),
        "agent replies cut to their first sentence": (
            with_agent_text(rest, lambda t: t.split(". ")[0].rstrip(".") + "."),
            {"agent_length"},
        ),
        "agent replies in a formal style (opener + closer)": (
            with_agent_text(rest, lambda t: FORMAL[0] + t + FORMAL[1]),
            {"agent_length", "agent_oov_rate", "agent_embedding"},
        ),
        "typo-heavy customer text": (with_typos(rest, seed=2), {"customer_oov_rate"}),
    }
    for name, (current, expected) in moved.items():
        report = compare_batches(reference, current, config)
        drifted = set(report.drifted)
        rows.append(
            {
                "pair": name,
                "expected": "drift in " + ", ".join(sorted(expected)),
                "drifted": sorted(drifted),
                "right": expected <= drifted,
            }
        )
    return {
        "rows": rows,
        "false_alarm_trials": false_alarms,
        "seconds_per_comparison_median": round(sorted(seconds)[len(seconds) // 2], 2),
    }


# ---- the monitor on 10,000 conversations -------------------------------------------------------


def _put_gz(client: Any, bucket: str, key: str, records: list[dict[str, Any]]) -> None:
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    client.put_object(Bucket=bucket, Key=key, Body=body)


def _register_smollm2_champion(settings: Settings, reference_key: str, workdir: Path) -> None:
    """The real SmolLM2 with a fresh (zero-effect) LoRA adapter as the champion, its card's
    promotion loss measured on conversations of its own training data, as the retrain flow does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.evaluate.aggregate import ModelRef
    from tasks.monitor.performance_drift import answer_losses, recent_examples
    from tasks.promote.registry import CHAMPION, alias_key, version_key
    from tasks.storage import layout
    from tasks.storage.s3 import get_json, put_json, s3_client
    from tasks.train.base_model import SMOLLM2, resolve_base_model

    base = resolve_base_model(SMOLLM2, settings.cache_dir)
    adapter = workdir / "adapter"
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"])
    get_peft_model(model, lora).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    client, bucket, version = s3_client(settings.s3), settings.s3.bucket, "bench-v1"
    for path in adapter.iterdir():
        client.upload_file(
            str(path), bucket, version_key(settings, version, f"adapter/{path.name}")
        )
    from tasks.monitor.sources import read_batch

    training = read_batch(layout.s3_uri(bucket, reference_key), settings.s3).records
    ref = ModelRef(label="champion", base_model_dir=str(base), adapter_dir=str(adapter))
    nll, tokens = answer_losses(settings, ref, recent_examples(settings, training[::-1]))
    dataset_prefix = layout.dataset_prefix(settings.s3, "bench")
    manifest = {"sources": [{"key": reference_key}]}
    put_json(client, bucket, layout.dataset_manifest_key(settings.s3, "bench"), manifest)
    card = {
        "name": settings.model_name,
        "version": version,
        "base_model": SMOLLM2,
        "lineage": {"dataset_prefix": dataset_prefix},
        "evaluation": {"recent": {"challenger": {"overall": {"loss": nll.sum() / tokens.sum()}}}},
    }
    card_key = version_key(settings, version, "card.json")
    put_json(client, bucket, card_key, card)
    put_json(client, bucket, alias_key(settings, CHAMPION), {"version": version})
    assert get_json(client, bucket, card_key).body["version"] == version


def _task_seconds(flow_run_id: str) -> dict[str, float]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    seconds: dict[str, float] = {}
    for run in runs:
        name = run.name.rsplit("-", 1)[0]
        seconds[name] = round(seconds.get(name, 0.0) + run.total_run_time.total_seconds(), 2)
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def monitor_timing(conversations: int) -> dict[str, Any]:
    from flows.monitor import monitor
    from tasks.storage import layout
    from tasks.storage.local_server import moto_server
    from tasks.storage.s3 import ensure_bucket, s3_client

    records = bitext()
    reference, pool = halves(records, seed=7)
    rng, now = random.Random(3), datetime.now(UTC)
    window = []
    for i in range(conversations):  # Bitext conversations re-sent over the last 23 hours
        record = rng.choice(pool)
        stamp = now - timedelta(seconds=(i * 23 * 3600) // conversations + 60)
        window.append(
            {**record, "conversation_id": f"bench-{i:05d}", "timestamp": stamp.isoformat()}
        )
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as workdir:
        settings = Settings(s3={"bucket": "drift-bench", "endpoint_url": endpoint})
        client = s3_client(settings.s3)
        ensure_bucket(client, settings.s3.bucket)
        reference_key = layout.raw_key(settings.s3, "2026-10-01", "reference.jsonl.gz")
        _put_gz(client, settings.s3.bucket, reference_key, reference)
        for day in sorted({r["timestamp"][:10] for r in window}):
            key = layout.raw_key(settings.s3, day, "window.jsonl.gz")
            _put_gz(
                client, settings.s3.bucket, key, [r for r in window if r["timestamp"][:10] == day]
            )
        _register_smollm2_champion(settings, reference_key, Path(workdir))
        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        with use_settings(settings):
            result = monitor()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        load_after = os.getloadavg()[0]
        tasks = _task_seconds(result.run_id)
    started = time.perf_counter()  # the data-drift task without MiniLM: what embeddings cost
    compare_batches(reference, window, settings.drift, embeddings=False)
    without_embeddings = time.perf_counter() - started
    return {
        "conversations": conversations,
        "reference_records": len(reference),
        "seconds": round(seconds, 1),
        # CPU time of this process (all its threads) during the flow: what contention from
        # other users of the machine does not inflate; on 2 idle cores wall ≈ cpu / 2 at best
        "cpu_seconds": round(cpu_seconds, 1),
        "limit_s": MONITOR_LIMIT_S,
        "within_limit": seconds <= MONITOR_LIMIT_S,
        "verdict": result.verdict,
        "drifted": [s.name for s in result.statistics if s.drifted],
        "task_seconds": tasks,
        "data_drift_without_embeddings_s": round(without_embeddings, 1),
        "load_average_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        "embedding_sample_per_side": settings.drift.embedding_sample,
        "champion_examples_scored": settings.drift.performance_examples,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| pair | expected | statistics that drifted | right |", "|---|---|---|---|"]
    for row in rows:
        drifted = ", ".join(row["drifted"]) or "none"
        if "false_alarms" in row:
            drifted = f"{row['false_alarms']} of {TRIALS} trials: {drifted}"
        lines.append(
            f"| {row['pair']} | {row['expected']} | {drifted} | {'yes' if row['right'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-monitor", action="store_true", help="Only the verdict table.")
    parser.add_argument("--skip-verdicts", action="store_true", help="Only the monitor timing.")
    parser.add_argument("--conversations", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("RETRAIN_CONFIG_FILE", "no-such-retrain.toml")
    apply_runtime_env()
    results: dict[str, Any] = stored(KEY) or {}  # a part not rerun keeps its last figures
    results["cpus"] = os.cpu_count()
    if not args.skip_verdicts:
        results["verdicts"] = verdicts(DriftSettings())
        results["verdicts"]["measured_at"] = datetime.now(UTC).isoformat()
        print(markdown(results["verdicts"]["rows"]))
    if not args.skip_monitor:
        results["monitor"] = monitor_timing(args.conversations)
        results["monitor"]["measured_at"] = datetime.now(UTC).isoformat()
        print(json.dumps(results["monitor"], indent=2))
    save_figures(KEY, results)


if __name__ == "__main__":
    main()
