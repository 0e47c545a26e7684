"""An OpenAI Agents SDK agent on Temporal whose tool asks Countersign first.

`PayablesAgent` runs an Agents SDK `Agent` inside a Temporal workflow
(`temporalio.contrib.openai_agents`: model calls are activities). Its
`pay_invoice` tool is workflow code: it runs Countersign's `ApprovalGate`
as a child workflow and pays (the `pay` activity of workflow.py) only when
the gate says APPROVED, APPROVED_WITH_EDITS or NOT_REQUIRED, with the
arguments the gate returns and the approval id as the idempotency key.
Otherwise the tool answers the gate's one-line `message` to the model
(`denied by bob@example.com: no budget this month`), which can tell the user.
"""

from dataclasses import dataclass
from datetime import timedelta

from agents import Agent, RunContextWrapper, Runner, function_tool
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflow import GO, Payment, pay


@dataclass
class PayablesContext:
    """What the tool needs besides the model's arguments."""

    requester: str
    pay_url: str
    agent: str
    gate_task_queue: str
    paid: list


@function_tool
async def pay_invoice(
    ctx: RunContextWrapper[PayablesContext], invoice: str, amount: float, to: str
) -> str:
    """Pay a supplier invoice. A reviewer may have to approve it first.

    Args:
        invoice: The invoice number, e.g. INV-7.
        amount: The amount to pay.
        to: The supplier.
    """
    info = workflow.info()
    outcome = await workflow.execute_child_workflow(
        "ApprovalGate",
        {
            "agent": ctx.context.agent,
            "tool": "pay_invoice",
            "arguments": {"invoice": invoice, "amount": amount, "to": to},
            "requester": ctx.context.requester,
            "context": f"PayablesAgent: the model asked to pay invoice {invoice} to {to}",
            "callerWorkflowId": info.workflow_id,
        },
        # One gate per invoice within this run.
        id=f"{info.workflow_id}-gate-{invoice}",
        task_queue=ctx.context.gate_task_queue,
        result_type=dict,
    )
    state = outcome.get("state", "GATE_STATE_UNSPECIFIED")
    if state not in GO:
        # The model gets the reviewer's answer, never a payment.
        return f"Not paid: {outcome.get('message', state)}"
    await workflow.execute_activity(
        pay,
        Payment(
            url=ctx.context.pay_url,
            arguments=outcome.get("arguments", {}),
            idempotency_key=outcome.get("approvalId") or f"{info.workflow_id}-gate-{invoice}",
        ),
        start_to_close_timeout=timedelta(seconds=30),
    )
    ctx.context.paid.append(invoice)
    return f"Paid invoice {invoice} ({outcome.get('message', '')})"


@workflow.defn
class PayablesAgent:
    @workflow.run
    async def run(self, request: dict) -> dict:
        context = PayablesContext(
            requester=request["requester"],
            pay_url=request["payUrl"],
            agent=request.get("agent", "payments"),
            gate_task_queue=request.get("gateTaskQueue", "countersign"),
            paid=[],
        )
        agent = Agent[PayablesContext](
            name="payables",
            instructions="You pay supplier invoices with the pay_invoice tool and report what happened.",
            tools=[pay_invoice],
        )
        result = await Runner.run(agent, input=request["prompt"], context=context)
        return {"finalOutput": result.final_output, "paid": context.paid}
