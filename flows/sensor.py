"""The S3 sensor: for buckets without notifications, announce new support logs as events.

Each poll lists `raw/` against the ingest watermark (read only: the watermark moves only when a
retrain run has processed the objects), posts one `support-logs.arrived` event per object not
announced before, and remembers what it announced in `state/sensor-announced.json` (conditional
write), so an object is announced once per ETag, not once per poll.

    prefect deploy --prefect-file deployments/prefect.yaml --name s3-sensor  # every minute
    python -m flows.sensor                                                 # one poll, here
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task

from tasks.config import Settings, apply_runtime_env
from tasks.ingest.notifications import ArrivedObject, arrival_event, post_events
from tasks.ingest.objects import find_new_objects
from tasks.storage import layout
from tasks.storage.s3 import get_json, put_json_if, s3_client


@task(retries=2, retry_delay_seconds=5)
def announce_new_objects(settings: Settings) -> int:
    """Post an event for each unprocessed raw object not yet announced; returns how many.

    The announced list keeps only objects the watermark has not processed yet, so it stays as
    small as the backlog. Events go out before the list is saved: a crash in between
    re-announces (the trigger window absorbs it) rather than forgetting an arrival.
    """
    s3 = settings.s3
    client = s3_client(s3)
    pending = find_new_objects.fn(settings).objects
    state = get_json(client, s3.bucket, layout.announced_key(s3))
    announced: dict[str, str] = (state.body or {}).get("announced", {})
    fresh = [obj for obj in pending if announced.get(obj.key) != obj.etag]
    seen_at = datetime.now(UTC)
    posted = post_events(
        arrival_event(
            ArrivedObject(
                bucket=s3.bucket, key=obj.key, etag=obj.etag, size=obj.size, occurred=seen_at
            ),
            "sensor",
        )
        for obj in fresh
    )
    still_pending = {obj.key: obj.etag for obj in pending}
    if fresh or still_pending != announced:
        put_json_if(
            client,
            s3.bucket,
            layout.announced_key(s3),
            {"announced": still_pending},
            state.etag,
        )
    return posted


@flow(name="sensor")
def sensor() -> int:
    """Announce support logs that landed in S3 since the last poll as `support-logs.arrived`.

    No parameters: the bucket and endpoint come from the worker's environment, like the
    retrain deployment's.
    """
    apply_runtime_env()
    settings = Settings()
    posted = announce_new_objects(settings)
    get_run_logger().info(
        "announced %d new object(s) under %s", posted, layout.raw_uri(settings.s3)
    )
    return posted


if __name__ == "__main__":
    sensor()
