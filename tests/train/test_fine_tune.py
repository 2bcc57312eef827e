"""The fine-tune worker: checkpoints synced to S3, and a worker killed mid-run (SIGKILL, in its
own process) whose re-run resumes from the last complete checkpoint instead of starting over."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from tasks.prepare.window import single_version_window
from tasks.promote.registry import current_champion, register_version
from tasks.storage.s3 import list_objects, s3_client, upload_dir
from tasks.train.base_model import resolve_base_model
from tasks.train.checkpoints import (
    checkpoint_key,
    checkpoint_prefix,
    complete_steps,
    prune_checkpoints,
)
from tasks.train.handoff import (
    FineTuneParams,
    challenger_result,
    download_model_dir,
    read_output,
    run_fine_tune,
    write_params,
)
from tests.helpers.datasets import examples, put_golden, put_version, ref

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 2
STEPS = 8


def _worker_settings(settings, tiny_model_dir):
    training = settings.training.model_copy(
        update={
            "base_model": str(tiny_model_dir),
            "max_steps": STEPS,
            "max_length": 64,
            "batch_size": 2,
            "eval_steps": INTERVAL,
            "max_eval_examples": 4,
            "early_stopping_patience": None,
            "worker": settings.training.worker.model_copy(update={"checkpoint_steps": INTERVAL}),
        }
    )
    return settings.model_copy(update={"training": training})


def _params(settings, run_id: str) -> FineTuneParams:
    golden_key = put_golden(settings, examples("golden", 1))
    prefix = put_version(settings, "ds-kill", timedelta(0), examples("t", 40), examples("v", 4))
    dataset = ref(settings, "ds-kill", prefix, golden_key)
    return FineTuneParams(
        run_id=run_id,
        bucket=settings.s3.bucket,
        dataset=dataset,
        window=single_version_window(dataset),
        training=settings.training,
    )


def _delete_prefix(settings, prefix: str) -> None:
    client = s3_client(settings.s3)
    for obj in list(list_objects(client, settings.s3.bucket, prefix)):
        client.delete_object(Bucket=settings.s3.bucket, Key=obj["Key"])


def _start_worker(settings, params_file: Path, cache_dir: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RETRAIN_S3__ENDPOINT_URL": settings.s3.endpoint_url,
        "RETRAIN_S3__BUCKET": settings.s3.bucket,
        "RETRAIN_CACHE_DIR": str(cache_dir),
    }
    command = [sys.executable, "-m", "flows.fine_tune", str(params_file)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_killed_worker_resumes_from_its_last_complete_checkpoint(
    settings, tiny_model_dir, tmp_path
):
    settings = _worker_settings(settings, tiny_model_dir)
    params = _params(settings, "pytest-uninterrupted")
    prefix = checkpoint_prefix(settings, checkpoint_key(settings, params.window))

    # an uninterrupted run: the reference; then its checkpoints go, as if it never ran
    reference = run_fine_tune(settings, params)
    assert reference is not None and reference.result.resumed_from_step is None
    kept = complete_steps(settings, prefix)  # the newest two, and the best if it is older
    assert kept[-2:] == [STEPS - INTERVAL, STEPS] and len(kept) <= 3
    _delete_prefix(settings, prefix)

    # a worker process, SIGKILLed as soon as its first checkpoint is complete in S3
    params_file = write_params(
        params.model_copy(update={"run_id": "pytest-killed"}), tmp_path / "p.json"
    )
    worker = _start_worker(settings, params_file, tmp_path / "killed-worker")
    deadline = time.monotonic() + 120
    while not complete_steps(settings, prefix):
        assert worker.poll() is None, worker.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint reached S3 in 120 s"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    log = worker.communicate(timeout=30)[0]
    assert worker.returncode == -signal.SIGKILL
    reached = max(int(s) for s in re.findall(r"step (\d+)/", log))
    assert reached < STEPS, "the worker finished before it was killed: nothing was resumed"
    landed = complete_steps(settings, prefix)

    # the re-run, on a fresh worker (empty cache): resumes from the newest complete checkpoint
    fresh = settings.model_copy(update={"cache_dir": tmp_path / "fresh-worker"})
    resumed = run_fine_tune(fresh, params.model_copy(update={"run_id": "pytest-resumed"}))
    assert resumed is not None
    assert resumed.result.resumed_from_step == landed[-1]
    assert reached - resumed.result.resumed_from_step <= INTERVAL  # at most one interval lost
    assert resumed.result.steps == reference.result.steps == STEPS
    # the same seed and restored optimizer/scheduler/RNG state: the same end point
    assert resumed.result.loss_curve[-1] == pytest.approx(reference.result.loss_curve[-1], rel=1e-3)
    assert resumed.result.best_val_loss == pytest.approx(reference.result.best_val_loss, rel=1e-3)
    assert len(resumed.result.loss_curve) == STEPS - landed[-1]  # only the lost steps retrained

    # a retry of the finished training trains nothing again and hands off the same end point
    again = run_fine_tune(fresh, params.model_copy(update={"run_id": "pytest-again"}))
    assert again == resumed == read_output(settings, "pytest-again")
    assert again.result.steps == STEPS


def test_old_checkpoints_are_pruned_marker_first_and_the_best_is_kept(settings):
    client, bucket, prefix = s3_client(settings.s3), settings.s3.bucket, "checkpoints/k/"
    for step in range(2, 12, 2):
        client.put_object(Bucket=bucket, Key=f"{prefix}checkpoint-{step}/adapter.safetensors")
        client.put_object(Bucket=bucket, Key=f"{prefix}checkpoint-{step}/COMPLETE")
    client.put_object(Bucket=bucket, Key=f"{prefix}checkpoint-12/adapter.safetensors")  # uploading

    assert prune_checkpoints(settings, prefix, keep=2, best=4) == [2, 6]
    assert complete_steps(settings, prefix) == [4, 8, 10]
    left = {obj["Key"].removeprefix(prefix) for obj in list_objects(client, bucket, prefix)}
    assert not any(key.startswith(("checkpoint-2/", "checkpoint-6/")) for key in left)
    assert "checkpoint-12/adapter.safetensors" in left  # not complete yet: not touched


def test_checkpoints_by_the_clock_when_no_step_interval_is_set(settings, tiny_model_dir):
    settings = _worker_settings(settings, tiny_model_dir)
    worker = settings.training.worker.model_copy(
        update={"checkpoint_steps": None, "checkpoint_minutes": 1e-6, "keep_checkpoints": 1}
    )
    training = settings.training.model_copy(update={"max_steps": 3, "worker": worker})
    settings = settings.model_copy(update={"training": training})
    params = _params(settings, "pytest-by-the-clock")
    prefix = checkpoint_prefix(settings, checkpoint_key(settings, params.window))

    output = run_fine_tune(settings, params)
    assert output is not None and output.result.steps == 3
    kept = complete_steps(settings, prefix)
    assert kept[-1] == 3 and len(kept) <= 2  # every step saved; older ones pruned


def test_merged_weights_travel_to_the_registry_through_s3(settings, tiny_model_dir):
    settings = _worker_settings(settings, tiny_model_dir)
    worker = settings.training.worker.model_copy(update={"checkpoint_steps": None})
    training = settings.training.model_copy(
        update={"max_steps": 1, "merge_adapter": True, "worker": worker}
    )
    settings = settings.model_copy(update={"training": training})
    output = run_fine_tune(settings, _params(settings, "pytest-merged"))
    assert output is not None and output.merged_uri

    trained = challenger_result(settings, output)
    assert trained.merged_dir and Path(trained.merged_dir, "model.safetensors").is_file()
    prefix = register_version.fn(settings, "v-merged", trained.adapter_dir, {}, trained.merged_dir)
    keys = {o["Key"] for o in list_objects(s3_client(settings.s3), settings.s3.bucket, "models/")}
    version = prefix.removeprefix(f"s3://{settings.s3.bucket}/")
    assert {version + "merged/model.safetensors", version + "adapter/README.md"} <= keys
    assert not any(key.endswith((".bin", ".pt", ".pkl")) for key in keys)


def test_two_launched_processes_split_the_window_and_train_one_model(
    prefect_api, settings, tiny_model_dir
):
    """`accelerate launch` / torchrun on CPU: a gloo DDP group, not two lone trainings."""
    from prefect import flow

    from flows.fine_tune import launch

    settings = _worker_settings(settings, tiny_model_dir)
    worker = settings.training.worker.model_copy(update={"checkpoint_steps": None})
    one_epoch = {"max_steps": None, "epochs": 1.0, "worker": worker}
    settings = settings.model_copy(
        update={"training": settings.training.model_copy(update=one_epoch)}
    )
    single = run_fine_tune(settings, _params(settings, "pytest-one-process"))

    @flow
    def two_processes():
        command = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2"
        return launch(command, _params(settings, "pytest-two-processes"), settings)

    both = two_processes()
    assert single is not None and single.result.steps == 20  # 40 examples, 2 a step
    assert both.result.processes == 2  # one gloo group: gradients are averaged every step
    assert both.result.steps == 10 and both.result.examples_seen == 40
    assert len(both.result.loss_curve) == 10
    # the window was split between them (about one epoch's tokens in all), not trained twice
    assert both.result.tokens_seen == pytest.approx(single.result.tokens_seen, rel=0.1)


def test_a_run_waits_for_a_free_gpu_slot_and_says_so(prefect_api, caplog):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency

    from flows.fine_tune import gpu_slot

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="gpu-pytest", limit=1)
        )

    @flow
    def one_training() -> float:
        with gpu_slot("gpu-pytest"):
            return time.monotonic()

    with ThreadPoolExecutor(1) as pool:
        with concurrency("gpu-pytest", occupy=1):  # another run trains on the only GPU
            waiting = pool.submit(one_training)
            time.sleep(3)
            assert not waiting.done()
            released = time.monotonic()
        started = waiting.result(timeout=60)
    assert started >= released
    assert "waiting for a `gpu-pytest` slot: 1 of 1 are in use" in caplog.text
    assert "holding a `gpu-pytest` slot" in caplog.text


def test_base_model_and_adapters_cross_s3_as_safetensors_only(settings, tiny_model_dir, tmp_path):
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    upload_dir(client, tiny_model_dir, bucket, "base-models/tiny/")
    worker = settings.model_copy(
        update={
            "cache_dir": tmp_path,
            "training": settings.training.model_copy(
                update={"base_model": f"s3://{bucket}/base-models/tiny"}
            ),
        }
    )
    name = worker.training.base_model
    local = resolve_base_model(name, tmp_path, worker.s3)
    assert local.is_relative_to(tmp_path) and (local / "model.safetensors").is_file()
    assert resolve_base_model(name, tmp_path, worker.s3) == local  # downloaded once
    # the champion loader (evaluation, registry) resolves it the same way
    champion = current_champion.fn(worker)
    assert champion.model.base_model_dir == str(local) and champion.model.base_model == name

    # a model re-uploaded under the same prefix is fetched again, not served stale
    client.put_object(Bucket=bucket, Key="base-models/tiny/generation_config.json", Body=b"{}")
    assert resolve_base_model(name, tmp_path, worker.s3) != local

    client.put_object(Bucket=bucket, Key="base-models/pickled/pytorch_model.bin", Body=b"x")
    client.put_object(Bucket=bucket, Key="base-models/pickled/model.safetensors", Body=b"x")
    with pytest.raises(ValueError, match=r"pickled files \['pytorch_model.bin'\].*safetensors"):
        download_model_dir(worker, f"s3://{bucket}/base-models/pickled/", tmp_path / "p")
    with pytest.raises(ValueError, match=r"no \*\.safetensors"):
        download_model_dir(worker, f"s3://{bucket}/nothing-here/", tmp_path / "n")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        download_model_dir(worker, "/local/path", tmp_path / "x")
