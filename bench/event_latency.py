"""Time from an object landing in S3 to its triggered retrain run starting, on the `make up`
stack (moto S3 → SQS notification → bridge → `support-logs.arrived` → trigger → cpu worker).

    make up && .venv/bin/python bench/event_latency.py --prefect-port 4200 --s3-port 5055

Target: ≤ 10 s from put_object to the run's start. Reports the time to the run's creation (the
trigger fired), to Pending (a worker took it) and to Running (the flow code started, after the
worker's subprocess imported it). Run it right after `make up`: the trigger starts one run per
10-minute window, so a second arrival within the window starts nothing (by design). The run is
cancelled once it has started (the figure is about reacting, not about training).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--s3-port", type=int, default=5055)
    parser.add_argument("--out", type=Path, default=Path("bench/results/event_latency.json"))
    args = parser.parse_args()
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{args.prefect_port}/api"
    os.environ["RETRAIN_S3__ENDPOINT_URL"] = f"http://127.0.0.1:{args.s3_port}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local-stack")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local-stack")

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.states import Cancelled

    from tasks.config import Settings
    from tasks.s3 import s3_client

    s3 = Settings().s3
    key = f"{s3.raw_prefix}dt={datetime.now(UTC):%Y-%m-%d}/bench-{uuid.uuid4().hex[:8]}.jsonl"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/support-bot")
        put_at = datetime.now(UTC)
        s3_client(s3).put_object(Bucket=s3.bucket, Key=key, Body=b'{"conversation_id": "b"}\n')
        deadline = time.monotonic() + 60
        run = None
        while run is None and time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
            started = [r for r in runs if r.start_time and r.created and r.created >= put_at]
            run = started[0] if started else None
            time.sleep(0.2)
        if run is None:
            raise SystemExit("no triggered run started within 60 s: see .stack/logs/")
        client.set_flow_run_state(run.id, Cancelled(message="bench: only the start was timed"))
        reached = {s.type.value: s.timestamp for s in client.read_flow_run_states(run.id)}
    latency = (run.start_time - put_at).total_seconds()
    result = {
        "measured_at": put_at.isoformat(),
        "object_to_run_created_s": round((run.created - put_at).total_seconds(), 2),
        "object_to_pending_s": round((reached["PENDING"] - put_at).total_seconds(), 2),
        "object_to_running_s": round(latency, 2),
        "target_s": TARGET_S,
        "met": latency <= TARGET_S,
        "reason": run.parameters["params"]["reason"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
