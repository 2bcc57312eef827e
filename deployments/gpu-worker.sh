#!/usr/bin/env bash
# A Prefect worker for the `gpu` work pool, on a GPU host (process pool: runs the fine-tune flow
# as a subprocess of this worker). Needs the project installed (`make install`, with a CUDA
# build of torch), RETRAIN_* settings pointing at the same bucket as the retrain worker, and
# PREFECT_API_URL of the server. One run per GPU: the global concurrency limit `gpu` (created
# by `make up`, or `prefect global-concurrency-limit create gpu --limit <GPUs>`) holds the rest
# back, and `--limit` keeps this worker from starting more runs than its GPUs.
#
#   RETRAIN_GPU_SLOTS=2 deployments/gpu-worker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export RETRAIN_PROJECT_DIR="${RETRAIN_PROJECT_DIR:-$PWD}"
slots="${RETRAIN_GPU_SLOTS:-$(nvidia-smi --list-gpus 2>/dev/null | wc -l)}"
[ "${slots:-0}" -ge 1 ] || slots=1  # no nvidia-smi: one slot
exec prefect worker start --pool gpu --limit "$slots" --name "gpu-$(hostname)"
