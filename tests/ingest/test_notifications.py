"""S3 → Prefect events: the SQS notification bridge and the polling sensor, against the moto
server (which delivers S3 notifications to its own SQS) and a real Prefect API."""

from __future__ import annotations

import gzip
import json
import time

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows.sensor import sensor
from tasks.config import S3Settings, Settings
from tasks.ingest.notifications import (
    ARRIVED,
    NotSupportLogNotification,
    drain_queue,
    objects_from_notification,
)
from tasks.ingest.objects import WATERMARK_KEY
from tasks.storage.s3 import s3_client

LOG = gzip.compress(b'{"conversation_id": "c-1"}\n')


def _arrived_events(bucket: str, expected: int, timeout: float = 20.0) -> list:
    """Events are persisted asynchronously by the server: poll until `expected` are readable
    (and a little longer, so an extra one would be seen too)."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[ARRIVED]),
        resource=EventResourceFilter(id_prefix=[f"s3://{bucket}/"]),
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=event_filter, limit=50).events
            if len(events) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        return client.read_events(filter=event_filter, limit=50).events


def _notification(bucket: str, key: str, event_name: str = "ObjectCreated:Put") -> str:
    record = {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "eventTime": "2026-11-23T06:00:00.000Z",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 7, "eTag": "abc"}},
    }
    return json.dumps({"Records": [record]})


def test_notification_parsing_keeps_only_created_support_logs():
    s3 = S3Settings(bucket="logs")
    raw = "raw/support-logs/dt=2026-11-23/"
    found = objects_from_notification(_notification("logs", raw + "chat+export%C3%A9.jsonl"), s3)
    assert [(o.bucket, o.key) for o in found] == [("logs", raw + "chat exporté.jsonl")]
    assert objects_from_notification(_notification("other", raw + "a.jsonl"), s3) == []
    assert objects_from_notification(_notification("logs", "models/x/card.json"), s3) == []
    assert objects_from_notification(_notification("logs", raw + "notes.txt"), s3) == []
    deleted = _notification("logs", raw + "a.jsonl", "ObjectRemoved:Delete")
    assert objects_from_notification(deleted, s3) == []
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "logs"})
    assert objects_from_notification(test_event, s3) == []
    for body in ("not json", "[1, 2]", '{"Message": "hello"}'):
        with pytest.raises(NotSupportLogNotification):
            objects_from_notification(body, s3)


@pytest.mark.integration
def test_bridge_turns_s3_notifications_into_arrived_events(settings: Settings, prefect_api):
    s3 = settings.s3
    sqs = boto3.client("sqs", endpoint_url=s3.endpoint_url, region_name=s3.region)
    # visibility 0: a message left on the queue is visible again at once, for the last check
    queue_url = sqs.create_queue(
        QueueName=f"{s3.bucket}-events", Attributes={"VisibilityTimeout": "0"}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    client = s3_client(s3)
    client.put_bucket_notification_configuration(
        Bucket=s3.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    raw_keys = [f"{s3.raw_prefix}dt=2026-11-2{day}/logs {day}.jsonl.gz" for day in (1, 2)]
    for key in [*raw_keys, "models/support-bot/card.json", f"{s3.raw_prefix}README.txt"]:
        client.put_object(Bucket=s3.bucket, Key=key, Body=LOG)
    sqs.send_message(QueueUrl=queue_url, MessageBody="not an S3 notification")

    posted = sum(drain_queue(sqs, queue_url, s3, wait_seconds=1) for _ in range(3))

    assert posted == 2
    events = _arrived_events(s3.bucket, expected=2)
    assert sorted(e.resource["s3.key"] for e in events) == sorted(raw_keys)
    assert {e.resource.id for e in events} == {f"s3://{s3.bucket}/{k}" for k in raw_keys}
    assert all(e.payload["source"] == "s3-notification" for e in events)
    # handled notifications are gone; the foreign message is still there for its dead-letter
    left = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in left.get("Messages", [])] == ["not an S3 notification"]


@pytest.mark.integration
def test_sensor_announces_each_new_object_once_and_leaves_the_watermark(
    settings: Settings, prefect_api, monkeypatch: pytest.MonkeyPatch
):
    s3 = settings.s3
    # the sensor deployment takes no parameters: it reads the worker's environment
    monkeypatch.setenv("RETRAIN_S3__BUCKET", s3.bucket)
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", s3.endpoint_url)
    client = s3_client(s3)
    first = [f"{s3.raw_prefix}dt=2026-11-20/part-{n}.jsonl" for n in range(3)]
    for key in first:
        client.put_object(Bucket=s3.bucket, Key=key, Body=b"{}\n")

    assert sensor() == 3
    assert sensor() == 0  # nothing new: nothing re-announced
    late = f"{s3.raw_prefix}dt=2026-11-21/late.jsonl.gz"
    client.put_object(Bucket=s3.bucket, Key=late, Body=LOG)
    client.put_object(Bucket=s3.bucket, Key=first[0], Body=b'{"changed": 1}\n')  # new ETag
    assert sensor() == 2

    events = _arrived_events(s3.bucket, expected=5)
    keys = sorted(e.resource["s3.key"] for e in events)
    assert keys == sorted([*first, late, first[0]])
    assert len({e.resource["s3.etag"] for e in events if e.resource["s3.key"] == first[0]}) == 2
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.state_prefix)
    assert WATERMARK_KEY not in {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
