"""Human approval of a promotion: the flow pauses after the gate until a person answers.

With `promotion.require_approval` on, a run whose gate says "promote" pauses with
`pause_flow_run(wait_for_input=Approval)`. The Prefect UI shows the run as Paused with a form
(approve yes/no, reviewer, comment) under the decision artifact `retrain-decision`; resuming it
with an answer continues the run. The answer is recorded on the card and in the audit event. No
answer within `promotion.approval_timeout_s` counts as a rejection.

    # from a script instead of the UI
    from prefect.flow_runs import resume_flow_run
    resume_flow_run(FLOW_RUN_ID, run_input={"approve": True, "reviewer": "ana", "comment": "ok"})
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from tasks.promote.policy import Decision


class Approval(RunInput):
    """The form a reviewer fills in to resume the paused run."""

    approve: bool = Field(False, description="Promote this challenger to champion?")
    reviewer: str = Field("", description="Who decided (recorded in the audit log).")
    comment: str = Field("", description="Why (recorded in the audit log).")


def review(decision: Decision, version: str, timeout_s: int) -> Decision:
    """Ask a person to confirm a gate's "promote"; returns the decision with their answer."""
    prompt = (
        f"The gate recommends promoting **{version}**. Read the `retrain-decision` artifact of "
        "this run (rules, intervals, chart, sample replies), then approve or reject. "
        f"No answer within {timeout_s} s rejects it.\n\n"
        + "\n".join(f"- {reason}" for reason in decision.reasons)
    )
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=prompt),
            timeout=timeout_s,
            poll_interval=min(2, max(1, timeout_s // 4)),  # a person waits at most ~2 s
        )
    except FlowPauseTimeout:
        answer = None
    if answer is None:
        approval = {"approved": False, "reviewer": None, "comment": f"no answer in {timeout_s} s"}
    else:
        approval = {
            "approved": answer.approve,
            "reviewer": answer.reviewer,
            "comment": answer.comment,
        }
    get_run_logger().info("approval for %s: %s", version, approval)
    if approval["approved"]:
        reasons = [*decision.reasons, f"approved by {approval['reviewer'] or 'a reviewer'}"]
        return decision.model_copy(update={"reasons": reasons, "approval": approval})
    who = approval["reviewer"] or "nobody"
    reasons = [f"rejected at approval by {who}: {approval['comment']}", *decision.reasons]
    return decision.model_copy(update={"promote": False, "reasons": reasons, "approval": approval})
