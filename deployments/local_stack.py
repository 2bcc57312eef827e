"""`make up` / `make down`: the whole product on this machine, the way it runs in production.

up:   moto S3 (+ SQS for the bucket's notifications), a Prefect server on SQLite, the `cpu` and
      `gpu` work pools, the global concurrency limit `gpu` (RETRAIN_GPU_SLOTS slots, default 1),
      every deployment from deployments/prefect.yaml, one worker per pool and the S3 → Prefect
      event bridge; prints the UI address.
down: stops exactly the processes `up` started (their ids are in .stack/pids.json).

    python deployments/local_stack.py up [--prefect-port 4200] [--s3-port 5055]
    python deployments/local_stack.py down

Logs of each process: .stack/logs/<name>.log. Another Prefect database (Postgres) or real S3:
see the README section "Running it as deployments".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / ".stack"
PIDS = STACK / "pids.json"
BIN = Path(sys.executable).parent
POOLS = {"cpu": "process", "gpu": "process"}  # gpu: a process pool on a GPU host (see README)
QUEUE = "support-logs-arrived"


def _env(prefect_port: int, s3_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(STACK / "prefect"),  # the server's SQLite database lives here
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # the workers ask for runs every second (default 10 s): a triggered run waits ≤ 1 s for
        # one; prefetch (default 10 s) is about scheduled runs, not triggered ones
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "RETRAIN_PROJECT_DIR": str(ROOT),
        "RETRAIN_TIMEZONE": os.environ.get("RETRAIN_TIMEZONE", "UTC"),
        "RETRAIN_S3__ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        # moto accepts any credentials; boto3 needs some to sign requests
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local-stack"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local-stack"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


def start(name: str, command: list[str], env: dict[str, str], logs: Path) -> int:
    """Start one process in its own session (so stopping it signals its group, nothing else);
    its output goes to logs/<name>.log. Returns its process id."""
    log = (logs / f"{name}.log").open("ab")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process.pid


def _start(name: str, command: list[str], env: dict[str, str], pids: dict[str, int]) -> None:
    pids[name] = start(name, command, env, STACK / "logs")
    PIDS.write_text(json.dumps(pids, indent=2))  # written at once: `down` works after a failure


def wait_for(url: str, what: str, timeout: float, logs: Path = STACK / "logs") -> None:
    """Poll url until it answers; exit with where to look when it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s: see {logs}/")


def _prefect(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args], cwd=ROOT, env=env, check=True, timeout=300
    )


def pools_and_gpu_slots(env: dict[str, str]) -> None:
    """The `cpu` and `gpu` work pools (with the process worker's job template, as `prefect
    work-pool create` makes them) and the global concurrency limit `gpu`: a fine-tune run holds
    one slot while it trains (flows/fine_tune.py), so it counts the GPUs behind the `gpu` pool
    (RETRAIN_GPU_SLOTS, default 1). Through the API: one process, not a CLI start per object."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
        WorkPoolCreate,
    )
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    slots = int(env.get("RETRAIN_GPU_SLOTS", "1"))
    template = ProcessWorker.get_default_base_job_template()
    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        for pool, pool_type in POOLS.items():
            pool_spec = WorkPoolCreate(name=pool, type=pool_type, base_job_template=template)
            client.create_work_pool(pool_spec, overwrite=True)
        try:  # kept in .stack/prefect from an earlier `up`: resize it
            client.read_global_concurrency_limit_by_name("gpu")
            client.update_global_concurrency_limit("gpu", GlobalConcurrencyLimitUpdate(limit=slots))
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="gpu", limit=slots)
            )


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ as the stack's processes see it, for the block (Settings() and boto3 read it);
    restored afterwards, so a caller's own settings (a test session's) are left as they were."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def s3_notifications(env: dict[str, str]) -> str:
    """The bucket, and its object-created notifications into an SQS queue; returns the queue."""
    sys.path.insert(0, str(ROOT))
    from tasks.config import Settings
    from tasks.storage.aws_session import aws_session
    from tasks.storage.s3 import ensure_bucket, s3_client

    with environment(env):
        s3 = Settings().s3
        ensure_bucket(s3_client(s3), s3.bucket)
        sqs = aws_session(s3).client("sqs", endpoint_url=s3.endpoint_url, region_name=s3.region)
        queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        s3_client(s3).put_bucket_notification_configuration(
            Bucket=s3.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn["Attributes"]["QueueArn"], "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
    return queue_url


def deploy(env: dict[str, str], names: Sequence[str] = ()) -> None:
    """`prefect deploy` the deployments of deployments/prefect.yaml: the named ones (e.g.
    `support-bot`), or all of them."""
    chosen = [arg for name in names for arg in ("--name", name)] or ["--all"]
    _prefect(env, "deploy", "--prefect-file", "deployments/prefect.yaml", *chosen)


def workers_and_bridge(queue_url: str) -> dict[str, list[str]]:
    """The commands of the long-running processes next to the server: a worker per pool (named
    `<pool>-worker`, the name a run's `prefect.worker.name` label shows) and the S3 bridge."""
    commands = {
        f"worker-{pool}": [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--name",
            f"{pool}-worker",
        ]
        for pool in POOLS
    }
    bridge = ["-m", "flows.cli.events", "bridge", "--queue-url", queue_url]
    commands["s3-bridge"] = [sys.executable, *bridge]
    return commands


def up(prefect_port: int, s3_port: int) -> None:
    if PIDS.exists():
        raise SystemExit(f"{PIDS} exists: the stack is up already (run `make down` first)")
    started = time.monotonic()
    (STACK / "logs").mkdir(parents=True, exist_ok=True)
    env = _env(prefect_port, s3_port)
    pids: dict[str, int] = {}
    _start("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env, pids)
    server = ["server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)]
    _start("prefect-server", [str(BIN / "prefect"), *server], env, pids)
    wait_for(f"http://127.0.0.1:{s3_port}/moto-api/", "moto S3", 60)
    queue_url = s3_notifications(env)
    wait_for(f"{env['PREFECT_API_URL']}/health", "the Prefect server", 180)
    pools_and_gpu_slots(env)
    # the workers start (import Prefect, register) while `prefect deploy` runs
    for name, command in workers_and_bridge(queue_url).items():
        _start(name, command, env, pids)
    deploy(env)
    time.sleep(3)
    if exited := [name for name, pid in pids.items() if not _alive(pid)]:
        raise SystemExit(f"{', '.join(exited)} exited at start: see {STACK}/logs/; `make down`")
    print(
        f"\nup in {time.monotonic() - started:.0f} s\n"
        f"  Prefect UI   http://127.0.0.1:{prefect_port}\n"
        f"  S3 (moto)    {env['RETRAIN_S3__ENDPOINT_URL']}  bucket from RETRAIN_S3__BUCKET\n"
        f"  try:         PREFECT_API_URL={env['PREFECT_API_URL']} "
        f"RETRAIN_S3__ENDPOINT_URL={env['RETRAIN_S3__ENDPOINT_URL']} retrain seed --days 3\n"
        f"  logs         {STACK}/logs/   stop with `make down`"
    )


def stop(pids: dict[str, int], grace_s: float = 20) -> None:
    """SIGTERM each process group (last started first), SIGKILL what is left after grace_s."""
    for name, pid in reversed(pids.items()):  # workers and bridge before the server and S3
        try:
            os.killpg(pid, signal.SIGTERM)  # the group `start` created for this process
            print(f"stopped {name} (pid {pid})")
        except ProcessLookupError:
            print(f"{name} (pid {pid}) had already exited")
    deadline = time.monotonic() + grace_s
    for pid in pids.values():
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def down() -> None:
    if not PIDS.exists():
        print("nothing to stop: no .stack/pids.json")
        return
    stop(json.loads(PIDS.read_text()))
    PIDS.unlink()


def _alive(pid: int) -> bool:
    # reap it first if it is this process's own child (the e2e check starts them itself): an
    # exited child that nobody waited for stays a zombie, and its group would still answer
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--s3-port", type=int, default=5055)
    args = parser.parse_args()
    if args.action == "up":
        up(args.prefect_port, args.s3_port)
    else:
        down()


if __name__ == "__main__":
    main()
