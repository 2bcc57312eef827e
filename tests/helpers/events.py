"""Events the Prefect API received."""

from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter


def emitted_events(name: str, resource_id: str, timeout_s: float = 30) -> list:
    """Events the Prefect server stored; they arrive asynchronously, so poll briefly."""
    event_filter = EventFilter(
        event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id])
    )
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=event_filter, limit=50).events
            if events or time.monotonic() > deadline:
                return events
            time.sleep(0.5)
