"""Training checkpoints in S3, so a worker that dies mid-run costs at most one interval.

Every `training.worker.checkpoint_steps` steps and/or `checkpoint_minutes` minutes the Trainer
saves a full checkpoint (adapter, optimizer, scheduler, RNG state); a callback uploads it to
`checkpoints/<key>/checkpoint-<step>/`, writes `COMPLETE` there last, and prunes all but the
newest `keep_checkpoints` complete ones and the best one. The key is a hash of
the training window's content (dataset versions + object ETags) and of the training config, so
a re-run of the same training, on any worker, finds it and resumes from the newest checkpoint
that has its marker; a half-uploaded one has none and is never used.

Optimizer/scheduler/RNG states are torch files (Trainer's format, read with `weights_only`);
they stay under `checkpoints/` and never reach the registry, which receives safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from tasks.config import Settings
from tasks.prepare.window import TrainingWindow
from tasks.run_context import run_logger
from tasks.storage import layout
from tasks.storage.s3 import download_prefix, list_objects, s3_client, upload_dir

COMPLETE = "COMPLETE"
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)/")


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_key(settings: Settings, window: TrainingWindow, init_uri: str | None = None) -> str:
    """`<window content hash>-<training config hash>`: the same training gets the same key.

    ETags change whenever an object's bytes do, so a rewritten dataset gets a new key. Worker
    placement settings do not change what is trained and are left out of the config hash; the
    adapter training starts from (`init: champion`) does, and is in it.
    """
    client = s3_client(settings.s3)
    content = [
        [
            v.version,
            client.head_object(Bucket=settings.s3.bucket, Key=v.train_key)["ETag"],
            client.head_object(Bucket=settings.s3.bucket, Key=v.validation_key)["ETag"],
        ]
        for v in window.versions
    ]
    config = settings.training.model_dump(mode="json", exclude={"worker", "api", "backend"})
    config["init_adapter_uri"] = init_uri
    return f"{_digest(content)}-{_digest(config)}"


def checkpoint_prefix(settings: Settings, key: str) -> str:
    return layout.checkpoint_prefix(settings.training.worker.checkpoints_prefix, key)


def complete_steps(settings: Settings, prefix: str) -> list[int]:
    """Steps of the checkpoints under prefix whose completion marker exists, ascending."""
    client = s3_client(settings.s3)
    steps = []
    for obj in list_objects(client, settings.s3.bucket, prefix):
        rest = obj["Key"][len(prefix) :]
        match = CHECKPOINT_DIR.match(rest)
        if match and rest == f"{match.group(0)}{COMPLETE}":
            steps.append(int(match.group(1)))
    return sorted(steps)


def upload_checkpoint(settings: Settings, local_dir: Path, prefix: str) -> str:
    """Upload one `checkpoint-N` directory, then its marker: the marker means "all there"."""
    client = s3_client(settings.s3)
    target = f"{prefix}{local_dir.name}/"
    upload_dir(client, local_dir, settings.s3.bucket, target)
    client.put_object(Bucket=settings.s3.bucket, Key=target + COMPLETE, Body=b"")
    return target


def prune_checkpoints(settings: Settings, prefix: str, keep: int, best: int | None) -> list[int]:
    """Delete complete checkpoints older than the newest `keep` (never the best); returns the
    steps deleted. Each marker goes first, so a half-deleted checkpoint is never resumed from."""
    steps = complete_steps(settings, prefix)
    doomed = [step for step in steps[:-keep] if step != best]
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    for step in doomed:
        directory = f"{prefix}checkpoint-{step}/"
        client.delete_object(Bucket=bucket, Key=directory + COMPLETE)
        for obj in list(list_objects(client, bucket, directory)):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    return doomed


def _step_of(checkpoint_dir: str | None) -> int | None:
    return int(Path(checkpoint_dir).name.removeprefix("checkpoint-")) if checkpoint_dir else None


def download_latest(settings: Settings, prefix: str, local_root: Path) -> Path | None:
    """The newest complete checkpoint under prefix, downloaded into local_root; None if none.

    Trainer state names the best checkpoint by the path it had on the worker that saved it;
    that one is fetched too and the path rewritten, so `load_best_model_at_end` finds it here.
    """
    steps = complete_steps(settings, prefix)
    if not steps:
        return None
    client = s3_client(settings.s3)
    # under `accelerate launch` each process of this host fetches its own copy
    local_root = local_root / f"rank-{os.environ.get('LOCAL_RANK', '0')}"
    shutil.rmtree(local_root, ignore_errors=True)

    def fetch(step: int) -> Path:
        name = f"checkpoint-{step}"
        local = download_prefix(client, settings.s3.bucket, f"{prefix}{name}/", local_root / name)
        (local / COMPLETE).unlink(missing_ok=True)
        return local

    latest = fetch(steps[-1])
    state_file = latest / "trainer_state.json"
    state = json.loads(state_file.read_text())
    best = state.get("best_model_checkpoint")
    if best:
        best_step = _step_of(best)
        local_best = latest if best_step == steps[-1] else None
        if local_best is None and best_step in steps:
            local_best = fetch(best_step)
        state["best_model_checkpoint"] = str(local_best) if local_best else None
        state_file.write_text(json.dumps(state, indent=2))
    return latest


def s3_sync_callback(settings: Settings, prefix: str):
    """A TrainerCallback that uploads each checkpoint as soon as the Trainer has saved it."""
    from transformers import TrainerCallback

    class SyncCheckpointsToS3(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            # Under `accelerate launch` / torchrun every process writes part of the checkpoint
            # (its RNG state): upload once all have, from one process.
            if args.distributed_state is not None:
                args.distributed_state.wait_for_everyone()
            # the environment's RANK too: a launcher's processes that formed no process group
            # (e.g. torchrun on CPU) each think they are process zero
            if not state.is_world_process_zero or os.environ.get("RANK", "0") != "0":
                return
            local = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if local.is_dir():
                target = upload_checkpoint(settings, local, prefix)
                keep, best = worker.keep_checkpoints, _step_of(state.best_model_checkpoint)
                pruned = prune_checkpoints(settings, prefix, keep, best)
                run_logger(__name__).info(
                    "checkpoint at step %d synced to %s%s",
                    state.global_step,
                    layout.uri(settings.s3, target),
                    f" (pruned steps {pruned})" if pruned else "",
                )

    worker = settings.training.worker
    return SyncCheckpointsToS3()


def save_every_minutes(minutes: float):
    """A TrainerCallback that asks for a checkpoint once `minutes` have passed since the last
    one: a step interval alone can leave hours between checkpoints when steps are slow."""
    from transformers import TrainerCallback

    class SaveEveryMinutes(TrainerCallback):
        def __init__(self) -> None:
            self.last_save = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.last_save >= minutes * 60:
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            self.last_save = time.monotonic()

    return SaveEveryMinutes()
