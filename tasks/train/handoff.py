"""The S3 hand-off between the retrain flow and a fine-tune worker: nothing crosses as a path.

The retrain flow sends small typed references (`FineTuneParams`: dataset keys in the bucket, the
window, the training config, the run id, the init adapter as an s3:// URI). The worker trains,
then uploads under `training/<run-id>/`:

    adapter/            LoRA adapter (safetensors) + tokenizer + Hugging Face model card
    merged/             base weights with the adapter merged in (`training.merge_adapter`)
    train_result.json   the training report (TrainResult: steps, losses, tokens/s, ...)
    output.json         FineTuneOutput: the URIs above, written last (the run's answer)

The retrain side reads output.json and downloads the adapter into its own cache for evaluation
and the registry. Only safetensors weights travel: a pickled weight file is refused both ways.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.config import Settings, TrainingSettings
from tasks.prepare.dataset import DatasetRef
from tasks.prepare.window import TrainingWindow
from tasks.run_context import in_prefect_run, run_logger
from tasks.storage import layout
from tasks.storage.s3 import (
    download_prefix,
    get_json,
    put_json,
    s3_client,
    split_s3_uri,
    upload_dir,
)
from tasks.train.base_model import PICKLED_WEIGHTS, resolve_base_model
from tasks.train.checkpoints import checkpoint_key, checkpoint_prefix
from tasks.train.local import train_local
from tasks.train.result import TrainResult

OUTPUT = "output.json"


class FineTuneParams(BaseModel):
    """What a fine-tune run needs; the worker's own settings supply endpoint and cache."""

    run_id: str
    bucket: str = Field(description="Bucket every key below lives in.")
    dataset: DatasetRef
    window: TrainingWindow
    training: TrainingSettings
    init_adapter_uri: str | None = Field(None, description="s3:// prefix of a LoRA to continue.")


class FineTuneOutput(BaseModel):
    adapter_uri: str
    merged_uri: str | None = None
    report_uri: str
    checkpoint_uri: str | None = None
    result: TrainResult = Field(description="Metrics; its paths are the worker's, not ours.")


def handoff_prefix(settings: Settings, run_id: str) -> str:
    return layout.handoff_prefix(settings.training.worker.handoff_prefix, run_id)


def refuse_pickles(local_dir: Path, where: str) -> None:
    """Weights travel as safetensors only; a pickle can run code when it is loaded."""
    pickles = sorted(p.name for p in local_dir.rglob("*") if p.suffix in PICKLED_WEIGHTS)
    if pickles:
        raise ValueError(
            f"{where} holds pickled files {pickles}: only safetensors weights are accepted; "
            "save the model with `save_pretrained(dir, safe_serialization=True)`"
        )


def download_model_dir(settings: Settings, uri: str, local_dir: Path) -> Path:
    """An s3:// prefix of safetensors weights (+ tokenizer) → a fresh local directory."""
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    shutil.rmtree(local_dir, ignore_errors=True)
    download_prefix(s3_client(settings.s3), bucket, prefix, local_dir)
    if not any(local_dir.glob("*.safetensors")):
        raise ValueError(f"{uri} holds no *.safetensors weights: nothing to load")
    refuse_pickles(local_dir, uri)
    return local_dir


def upload_outputs(settings: Settings, result: TrainResult, run_id: str, checkpoint: str | None):
    """Adapter, tokenizer and report under `training/<run-id>/`; output.json last."""
    adapter_dir = Path(result.adapter_dir)
    refuse_pickles(adapter_dir, f"the trained adapter in {adapter_dir}")
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    prefix = handoff_prefix(settings, run_id)
    upload_dir(client, adapter_dir, bucket, prefix + "adapter/")
    merged_uri = None
    if result.merged_dir:
        refuse_pickles(Path(result.merged_dir), f"the merged model in {result.merged_dir}")
        upload_dir(client, Path(result.merged_dir), bucket, prefix + "merged/")
        merged_uri = layout.s3_uri(bucket, prefix + "merged/")
    put_json(client, bucket, prefix + "train_result.json", result.model_dump(mode="json"))
    output = FineTuneOutput(
        adapter_uri=layout.s3_uri(bucket, prefix + "adapter/"),
        merged_uri=merged_uri,
        report_uri=layout.s3_uri(bucket, prefix + "train_result.json"),
        checkpoint_uri=layout.s3_uri(bucket, checkpoint) if checkpoint else None,
        result=result,
    )
    put_json(client, bucket, prefix + OUTPUT, output.model_dump(mode="json"))
    return output


def read_output(settings: Settings, run_id: str) -> FineTuneOutput:
    client = s3_client(settings.s3)
    key = handoff_prefix(settings, run_id) + OUTPUT
    return FineTuneOutput.model_validate(get_json(client, settings.s3.bucket, key).body)


def is_main_process() -> bool:
    """Under `accelerate launch` every process trains; only rank 0 uploads."""
    return int(os.environ.get("RANK", "0")) == 0


def run_fine_tune(settings: Settings, params: FineTuneParams) -> FineTuneOutput | None:
    """Train on the worker from S3 references; returns the hand-off (None on ranks > 0)."""
    if params.bucket != settings.s3.bucket:
        raise ValueError(
            f"this worker's bucket is {settings.s3.bucket!r} but the run's data is in "
            f"{params.bucket!r}: set RETRAIN_S3__BUCKET on the worker to the retrain bucket"
        )
    settings = settings.model_copy(update={"training": params.training})
    run_dir = settings.cache_dir / "runs" / params.run_id
    init_dir = None
    if params.init_adapter_uri:
        init_dir = str(download_model_dir(settings, params.init_adapter_uri, run_dir / "init"))
    prefix = None
    if params.training.worker.checkpoints:
        key = checkpoint_key(settings, params.window, params.init_adapter_uri)
        prefix = checkpoint_prefix(settings, key)
        finished = finished_training(settings, prefix, params.run_id)
        if finished:
            return finished if is_main_process() else None
    train: Any = train_local if in_prefect_run() else train_local.fn
    result = train(settings, params.dataset, params.run_id, params.window, init_dir, prefix)
    if not is_main_process():
        return None
    output = upload_outputs(settings, result, params.run_id, prefix)
    if prefix:  # this window + config is trained: a retry hands off this output again
        put_json(
            s3_client(settings.s3),
            settings.s3.bucket,
            prefix + OUTPUT,
            output.model_dump(mode="json"),
        )
    return output


def finished_training(settings: Settings, prefix: str, run_id: str) -> FineTuneOutput | None:
    """The hand-off of a training of this key that already finished, re-issued as run_id's.

    Resuming a checkpoint at its last step would train one step more (Trainer's resume loop);
    the same window and config give the same adapter, so it is handed off instead.
    """
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    body = get_json(client, bucket, prefix + OUTPUT).body
    if body is None:
        return None
    done = FineTuneOutput.model_validate(body)
    run_logger(__name__).info(
        "this window and config were trained already: handing off %s again", done.adapter_uri
    )
    if is_main_process():
        put_json(
            client, bucket, handoff_prefix(settings, run_id) + OUTPUT, done.model_dump(mode="json")
        )
    return done


def challenger_result(settings: Settings, output: FineTuneOutput) -> TrainResult:
    """The worker's TrainResult with this side's paths: the adapter downloaded from S3 into
    the cache, the base model resolved here."""
    run_id = output.adapter_uri.rstrip("/").split("/")[-2]
    run_dir = settings.cache_dir / "runs" / run_id
    local = download_model_dir(settings, output.adapter_uri, run_dir / "challenger-s3")
    merged = None
    if output.merged_uri:
        merged = str(download_model_dir(settings, output.merged_uri, run_dir / "merged-s3"))
    base_dir = resolve_base_model(output.result.base_model, settings.cache_dir, settings.s3)
    return output.result.model_copy(
        update={"adapter_dir": str(local), "base_model_dir": str(base_dir), "merged_dir": merged}
    )


def write_params(params: FineTuneParams, path: Path) -> Path:
    """The JSON file `python -m flows.fine_tune` (and `accelerate launch`) reads."""
    path.write_text(json.dumps(params.model_dump(mode="json"), indent=2))
    return path
