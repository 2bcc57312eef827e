"""S3 hand-off overhead of the fine-tune worker, as a fraction of its training time.

One run of the fine-tune path the demo takes (packaged SmolLM2-135M, LoRA r=16 all-linear, the
demo's training settings, Bitext examples) against a local moto S3 server, then, in the same
process: the worker's upload (adapter + tokenizer + report, tasks/train/handoff.py upload_outputs)
and the retrain side's download of the adapter (as challenger_result does it), each timed
alone. Writes
the `handoff` entry of bench/results.json.

    .venv/bin/python bench/handoff.py               # the demo's 24 steps
    .venv/bin/python bench/handoff.py --steps 6     # shorter; the fraction only grows

Target: upload + download ≤ 5 % of the training time. The endpoint is on loopback: a real S3
bucket adds network time (the adapter is ~20 MB, under a second on a 200 Mbit/s link).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from record import save_figures
from train_throughput import bitext_examples

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="default: the demo's max_steps")
    args = parser.parse_args()

    from tasks.config import Settings, apply_runtime_env
    from tasks.prepare.dataset import DatasetRef
    from tasks.prepare.window import single_version_window
    from tasks.storage import layout
    from tasks.storage.local_server import moto_server
    from tasks.storage.s3 import ensure_bucket, put_jsonl, s3_client
    from tasks.train.handoff import (
        FineTuneParams,
        download_model_dir,
        run_fine_tune,
        upload_outputs,
    )

    apply_runtime_env()
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(s3={"bucket": "bench-handoff", "endpoint_url": endpoint})
        if args.steps:
            training = settings.training.model_copy(update={"max_steps": args.steps})
            settings = settings.model_copy(update={"training": training})
        client = s3_client(settings.s3)
        ensure_bucket(client, settings.s3.bucket)
        examples = bitext_examples(settings.training.max_steps * settings.training.batch_size + 16)
        train_key = layout.dataset_key(settings.s3, "bench", "train.jsonl")
        validation_key = layout.dataset_key(settings.s3, "bench", "validation.jsonl")
        put_jsonl(client, settings.s3.bucket, train_key, examples[16:])
        put_jsonl(client, settings.s3.bucket, validation_key, examples[:16])
        dataset = DatasetRef(
            version="bench",
            prefix=layout.dataset_prefix(settings.s3, "bench"),
            train_key=train_key,
            validation_key=validation_key,
            heldout_key=validation_key,
            golden_key="",
            counts={},
            curated=len(examples),
            quarantined=0,
            quarantine_key=None,
        )
        params = FineTuneParams(
            run_id="bench-handoff",
            bucket=settings.s3.bucket,
            dataset=dataset,
            window=single_version_window(dataset),
            training=settings.training,
        )
        output = run_fine_tune(settings, params)
        assert output is not None
        started = time.perf_counter()
        upload_outputs(settings, output.result, "bench-handoff-again", None)
        upload_s = time.perf_counter() - started
        started = time.perf_counter()  # what challenger_result downloads (the base is cached)
        adapter_dir = download_model_dir(settings, output.adapter_uri, Path(tmp) / "adapter")
        download_s = time.perf_counter() - started
        adapter_mb = sum(p.stat().st_size for p in adapter_dir.rglob("*")) / 1e6

    train_s = output.result.seconds
    fraction = (upload_s + download_s) / train_s
    figures = {
        "model": settings.training.base_model,
        "steps": output.result.steps,
        "batch_size": settings.training.batch_size,
        "device": output.result.device,
        "train_seconds": train_s,
        "upload_seconds": round(upload_s, 3),
        "download_seconds": round(download_s, 3),
        "adapter_and_tokenizer_mb": round(adapter_mb, 1),
        "overhead_fraction": round(fraction, 4),
        "target_fraction": TARGET,
        "meets_target": fraction <= TARGET,
        "s3": "moto on loopback",
    }
    save_figures("handoff", figures)
    print(
        f"train {train_s:.1f} s ({output.result.steps} steps on {output.result.device}); "
        f"upload {upload_s:.2f} s + download {download_s:.2f} s of {adapter_mb:.1f} MB = "
        f"{fraction:.2%} of training (target ≤ {TARGET:.0%})"
    )


if __name__ == "__main__":
    main()
