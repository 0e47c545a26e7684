"""A Python workflow that asks Countersign before it pays.

`PayInvoice` runs the `ApprovalGate` workflow (Countersign's worker, task
queue `countersign`) as a child, and calls its own `pay` activity only when
the gate says APPROVED, APPROVED_WITH_EDITS or NOT_REQUIRED, with the
arguments the gate returns and the approval id as the idempotency key.
"""

import asyncio
import json
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

GO = ("GATE_STATE_APPROVED", "GATE_STATE_APPROVED_WITH_EDITS", "GATE_STATE_NOT_REQUIRED")


@dataclass
class Payment:
    url: str
    arguments: dict
    idempotency_key: str


@activity.defn
async def pay(payment: Payment) -> dict:
    """POSTs the payment; the key lets the payee drop a retried duplicate."""

    def post() -> dict:
        request = urllib.request.Request(
            payment.url,
            data=json.dumps(payment.arguments).encode(),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": payment.idempotency_key,
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return {"status": response.status}

    return await asyncio.to_thread(post)


@workflow.defn
class PayInvoice:
    @workflow.run
    async def run(self, request: dict) -> dict:
        info = workflow.info()
        outcome = await workflow.execute_child_workflow(
            "ApprovalGate",
            {
                "agent": request.get("agent", "payments"),
                "tool": "pay_invoice",
                "arguments": {
                    "invoice": request["invoice"],
                    "amount": request["amount"],
                    "to": request["to"],
                },
                "requester": request["requester"],
                "context": f"PayInvoice: paying invoice {request['invoice']} to {request['to']}",
                "callerWorkflowId": info.workflow_id,
            },
            id=f"{info.workflow_id}-gate",
            task_queue=request.get("gateTaskQueue", "countersign"),
            result_type=dict,
        )
        # proto3 JSON leaves out empty fields.
        state = outcome.get("state", "GATE_STATE_UNSPECIFIED")
        result = {"state": state, "message": outcome.get("message", ""), "paid": None}
        if state in GO:
            result["paid"] = await workflow.execute_activity(
                pay,
                Payment(
                    url=request["payUrl"],
                    arguments=outcome.get("arguments", {}),
                    idempotency_key=outcome.get("approvalId") or info.workflow_id,
                ),
                start_to_close_timeout=timedelta(seconds=30),
            )
        return result
