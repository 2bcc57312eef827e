"""S3 → Prefect events: new support-log objects become `support-logs.arrived` events.

Two ways in, one event shape (resource `s3://<bucket>/<key>`, labels `s3.bucket`, `s3.key`,
`s3.etag`), posted to the Prefect API's `POST /events` so the retrain deployment's trigger sees
them:

- the notification bridge: S3 object-created notifications, as SQS delivers them, read from a
  queue (`retrain events bridge --queue-url URL`); a message is deleted only once its events
  were accepted, so a crash re-delivers instead of losing an arrival;
- the sensor (flows/sensor.py) for buckets without notifications: lists `raw/` against the
  ingest watermark (without moving it) and remembers what it already announced.

The event id is derived from bucket, key and ETag, so a re-delivered notification and a sensor
poll announce the same arrival under the same id; the trigger's `within` window makes one run of
a burst either way.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from prefect.client.orchestration import get_client
from prefect.events import Event
from pydantic import BaseModel

from tasks.config import S3Settings
from tasks.storage import layout

ARRIVED = "support-logs.arrived"
LOG_SUFFIXES = (".jsonl", ".jsonl.gz")
_EVENT_NAMESPACE = uuid.UUID("0b7d6b1e-3c54-4f0e-9d0c-5b2f6a1c9e11")  # stable ids across hosts

logger = logging.getLogger(__name__)


class ArrivedObject(BaseModel):
    """One support-log object that landed under the raw prefix."""

    bucket: str
    key: str
    etag: str
    size: int
    occurred: datetime


class NotSupportLogNotification(ValueError):
    """An SQS message that is not an S3 notification (left on the queue for its dead-letter)."""


def is_support_log(s3: S3Settings, bucket: str, key: str) -> bool:
    """Only the configured bucket's raw prefix carries support logs; everything else is ignored."""
    return bucket == s3.bucket and key.startswith(s3.raw_prefix) and key.endswith(LOG_SUFFIXES)


def objects_from_notification(message_body: str, s3: S3Settings) -> list[ArrivedObject]:
    """The support-log objects created according to one SQS message body.

    The body is S3's notification JSON (`{"Records": [...]}`; keys URL-encoded with `+` for
    spaces). S3's `s3:TestEvent`, other event kinds and keys outside the raw prefix yield
    nothing; a body that is not an S3 notification raises NotSupportLogNotification.
    """
    try:
        body = json.loads(message_body)
    except json.JSONDecodeError as error:
        raise NotSupportLogNotification(f"message body is not JSON: {error.msg}") from error
    if not isinstance(body, dict):
        raise NotSupportLogNotification("message body is not a JSON object")
    if body.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(body.get("Records"), list):
        raise NotSupportLogNotification("message body has no `Records` list of S3 events")
    arrived = []
    for record in body["Records"]:
        if record.get("eventSource") != "aws:s3" or not record.get("eventName", "").startswith(
            "ObjectCreated:"
        ):
            continue
        bucket = record["s3"]["bucket"]["name"]
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])
        if not is_support_log(s3, bucket, key):
            continue
        arrived.append(
            ArrivedObject(
                bucket=bucket,
                key=key,
                etag=obj.get("eTag", ""),
                size=obj.get("size", 0),
                occurred=record.get("eventTime") or datetime.now(UTC),
            )
        )
    return arrived


def arrival_event(obj: ArrivedObject, source: Literal["s3-notification", "sensor"]) -> Event:
    """The `support-logs.arrived` event for one object; same object + ETag → same event id."""
    etag = obj.etag.strip('"')
    return Event(
        id=uuid.uuid5(_EVENT_NAMESPACE, f"{obj.bucket}/{obj.key}@{etag}"),
        event=ARRIVED,
        occurred=obj.occurred,
        resource={
            "prefect.resource.id": layout.s3_uri(obj.bucket, obj.key),
            "prefect.resource.name": obj.key,
            "s3.bucket": obj.bucket,
            "s3.key": obj.key,
            "s3.etag": etag,
        },
        payload={"size": obj.size, "source": source},
    )


def post_events(events: Iterable[Event]) -> int:
    """Send events to the Prefect API (`POST /events`) and wait for it to accept them.

    Synchronous on purpose: callers mark an arrival as announced (or delete its SQS message)
    only after this returns, so a failure re-announces instead of losing the arrival.
    """
    batch = [event.model_dump(mode="json") for event in events]
    if batch:
        with get_client(sync_client=True) as client:
            client.request("POST", "/events", json=batch)
    return len(batch)


def drain_queue(
    sqs: Any, queue_url: str, s3: S3Settings, wait_seconds: int = 10, max_messages: int = 10
) -> int:
    """Receive one batch of S3 notifications from SQS, announce the support logs among them,
    delete the handled messages. Returns how many events were posted.

    A message that is not an S3 notification stays on the queue (and reaches the queue's
    dead-letter queue after its redrive count) rather than being deleted unread.
    """
    response = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds
    )
    events: list[Event] = []
    handled: list[dict[str, str]] = []
    for message in response.get("Messages", []):
        try:
            objects = objects_from_notification(message["Body"], s3)
        except NotSupportLogNotification as error:
            logger.warning("left message %s on the queue: %s", message["MessageId"], error)
            continue
        events.extend(arrival_event(obj, "s3-notification") for obj in objects)
        handled.append({"Id": message["MessageId"], "ReceiptHandle": message["ReceiptHandle"]})
    posted = post_events(events)
    if handled:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=handled)
    return posted
