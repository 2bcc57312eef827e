"""Approval through a real Prefect API: the run pauses, a person answers, the answer is kept."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.flow_runs import resume_flow_run

from flows import approval
from tasks.promote.policy import Decision

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@flow
def gate_then_ask(timeout_s: int) -> Decision:
    return approval.review(Decision(promote=True, reasons=["better"]), "v-test", timeout_s)


def start(timeout_s: int) -> tuple[str, threading.Thread, dict]:
    name = f"approval-{uuid.uuid4().hex[:8]}"
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            decision=gate_then_ask.with_options(flow_run_name=name)(timeout_s)
        )
    )
    thread.start()
    return name, thread, result


def paused_run_id(name: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state and runs[0].state.is_paused():
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError(f"flow run {name} never paused")


@pytest.mark.parametrize("approve", [True, False])
def test_a_person_approves_or_rejects_through_the_api(approve):
    name, thread, result = start(timeout_s=120)
    run_id = paused_run_id(name)
    resume_flow_run(
        run_id, run_input={"approve": approve, "reviewer": "ana", "comment": "read the replies"}
    )
    thread.join(timeout=60)

    decision = result["decision"]
    assert decision.promote is approve
    assert decision.approval == {
        "approved": approve,
        "reviewer": "ana",
        "comment": "read the replies",
    }
    if not approve:
        assert decision.reasons[0] == "rejected at approval by ana: read the replies"


def test_no_answer_within_the_timeout_rejects():
    name, thread, result = start(timeout_s=3)
    paused_run_id(name)
    thread.join(timeout=60)
    decision = result["decision"]
    assert not decision.promote
    assert decision.approval["approved"] is False and "no answer in 3 s" in decision.reasons[0]
