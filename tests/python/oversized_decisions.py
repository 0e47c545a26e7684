"""Sends oversized and malformed decisions to a waiting AgentRun with the
official Temporal Python SDK, by update and by signal, as any client with
namespace access could. Prints one JSON object per attempt on stdout.

Usage: oversized_decisions.py ADDRESS WORKFLOW_ID APPROVAL_ID
"""

import asyncio
import json
import sys

from temporalio.client import Client, WorkflowUpdateFailedError

MB = 1024 * 1024


def cases(approval_id):
    ok = {
        "approvalId": approval_id,
        "kind": "DECISION_KIND_APPROVE",
        "reviewer": "mallory@example.com",
        "reason": "trust me",
    }

    def with_(**fields):
        return {**ok, **fields}

    big = "x" * (19 * MB // 10)  # about 1.9 MB: just under Temporal's 2 MiB blob limit
    return [
        ("approvalId", with_(approvalId=approval_id + big)),
        ("reviewer", with_(reviewer=big)),
        ("reason", with_(reason=big)),
        ("argumentsSha256", with_(argumentsSha256=big)),
        ("scope", with_(scope=7)),
        ("kind", with_(kind=9)),
        ("editedArguments", with_(editedArguments={"to": "acme", "amount": 1, "currency": "EUR", "memo": big})),
        ("whole", with_(reason="r", editedArguments={"blob": ["y" * 1000] * 300})),
    ]


def code_of(error):
    """The refusal code: the application failure type of the failure's cause."""
    cause = getattr(error, "cause", None)
    while cause is not None:
        kind = getattr(cause, "type", None)
        if kind:
            return kind
        cause = getattr(cause, "cause", None)
    return None


async def main(address, workflow_id, approval_id):
    client = await Client.connect(address)
    handle = client.get_workflow_handle(workflow_id)
    for field, decision in cases(approval_id):
        size = len(json.dumps(decision))
        try:
            outcome = await handle.execute_update("decide", decision)
            print(json.dumps({"field": field, "channel": "update", "bytes": size,
                              "refused": False, "outcome": outcome}), flush=True)
        except WorkflowUpdateFailedError as e:
            message = str(e.cause) if e.cause else str(e)
            print(json.dumps({"field": field, "channel": "update", "bytes": size, "refused": True,
                              "code": code_of(e), "message": message[:2000],
                              "message_chars": len(message)}), flush=True)
        await handle.signal("approval_decision", decision)
        print(json.dumps({"field": field, "channel": "signal", "bytes": size}), flush=True)
    # Many small refused signals: the run keeps only the latest of them.
    for i in range(60):
        await handle.signal("approval_decision", {"approvalId": f"{approval_id}-nope-{i}",
                                                  "kind": "DECISION_KIND_APPROVE",
                                                  "reviewer": "mallory@example.com"})
    print(json.dumps({"field": "flood", "channel": "signal", "count": 60}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
