"""One retrain of a model at a time, whoever starts it: schedule, event, UI or `retrain run`.

Runs of one model share its ingest watermark and its champion alias, so two of them must never
overlap. The retrain deployment's own concurrency limit only orders the runs of that one
deployment; a manual `retrain run`, or another deployment of the same model, would not see it.
Every entry point therefore takes one slot of the Prefect global concurrency limit
`retrain-<model name>` (limit 1, created on first use) before the pipeline starts, and holds it
until the run ends. The slot is leased: a crashed process frees it when its lease runs out
(`lease_s`). A run that finds the slot taken says so, and what it waits for, then waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

# the error `concurrency()` raises; Prefect 3.8 defines it here and exports it nowhere else
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LEASE_S = 300.0  # renewed while the run lives; a crashed run's slot frees after this


def slot_name(model_name: str) -> str:
    """The global concurrency limit that orders the retrains of one model."""
    return f"retrain-{model_name}"


def _ensure_limit(name: str) -> None:
    # a missing limit is silently no limit at all for `concurrency()`: create it first
    with get_client(sync_client=True) as client:
        try:  # read first: creating an existing one makes the server log an IntegrityError
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it meanwhile
                limit = GlobalConcurrencyLimitCreate(name=name, limit=1)
                client.create_global_concurrency_limit(limit)


def _is_locked(error: ConcurrencySlotAcquisitionError) -> bool:
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


@contextmanager
def one_run_per_model(
    model_name: str, log: Callable[[str], None], lease_s: float = LEASE_S
) -> Iterator[None]:
    """Hold the model's retrain slot for the block; wait (and say so) while another run has it."""
    name = slot_name(model_name)
    _ensure_limit(name)
    with ExitStack() as held:
        try:  # one try without waiting, so a run that has to wait can say why
            held.enter_context(
                concurrency(name, max_retries=0, lease_duration=lease_s, strict=True)
            )
        except ConcurrencySlotAcquisitionError as error:
            if not _is_locked(error):
                raise
            log(
                f"waiting for the concurrency slot {name!r}: another retrain of {model_name} is "
                "running (scheduled, event-triggered or manual); this run starts when it ends"
            )
            held.enter_context(concurrency(name, lease_duration=lease_s, strict=True))
            log(f"got the concurrency slot {name!r}: starting")
        yield
