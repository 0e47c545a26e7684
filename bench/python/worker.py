"""The Python peer of the Countersign benchmark (crates/countersign/benches/proof.rs).

Two workflows with the official Python SDK (`temporalio`), driven by the same
Rust driver as the Rust flows:

* ``NullFlow``: start -> wait for the ``go`` signal -> one activity (``touch``,
  a POST to the bench's HTTP sink) -> complete. The minimal gated flow.
* ``GatedAgent``: the shape of Countersign's ``AgentRun`` around one gated call:
  a ``model`` activity, a pending approval (its id from ``workflow.uuid4()``,
  the ``CountersignStatus`` search attribute set to ``AwaitingApproval``, a
  24 h expiry timer raced against the decision), the ``decide`` update (with a
  validator, so a bad decision leaves no history), the tool activity
  (``touch``, keyed by the approval id), a second ``model`` activity for the
  answer, and completion.

Usage: ``python worker.py ADDRESS TASK_QUEUE MAX_CACHED_WORKFLOWS``. Prints
``ready`` on stdout once polling.
"""

import asyncio
import json
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.worker import Worker

STATUS = SearchAttributeKey.for_keyword("CountersignStatus")
TIMEOUT = timedelta(seconds=60)


async def post(url: str, key: str, body: dict) -> int:
    """POSTs JSON with an Idempotency-Key header (plain asyncio, no extra package)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    data = json.dumps(body).encode()
    writer.write(
        (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + data
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


@activity.defn(name="touch")
async def touch(call: dict) -> str:
    """The gated side effect: one POST to the sink."""
    status = await post(call["sink"], call["key"], call)
    return f"{status}"


@activity.defn(name="model")
async def model(turn: dict) -> dict:
    """A scripted model turn: first asks for the tool, then answers."""
    if turn["turn"] == 0:
        return {"content": "paying", "call": {"tool": "pay", "arguments": {"amount": 1}}}
    return {"content": "done", "call": None}


@workflow.defn(name="NullFlow")
class NullFlow:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, input: dict) -> str:
        await workflow.wait_condition(lambda: self.go)
        await workflow.execute_activity(
            touch,
            {"sink": input["sink"], "key": workflow.info().workflow_id},
            start_to_close_timeout=TIMEOUT,
        )
        return "done"

    @workflow.signal(name="go")
    def go_signal(self, _payload: Any = None) -> None:
        self.go = True

    @workflow.query(name="waiting")
    def waiting(self) -> bool:
        return not self.go


@workflow.defn(name="GatedAgent")
class GatedAgent:
    def __init__(self) -> None:
        self.approval_id = ""
        self.decided = False

    @workflow.run
    async def run(self, input: dict) -> str:
        turn = await workflow.execute_activity(
            model, {"turn": 0}, start_to_close_timeout=TIMEOUT
        )
        self.approval_id = f"{workflow.info().workflow_id}~{str(workflow.uuid4())[:8]}"
        workflow.upsert_search_attributes([STATUS.value_set("AwaitingApproval")])
        try:
            await workflow.wait_condition(lambda: self.decided, timeout=timedelta(hours=24))
        except asyncio.TimeoutError:
            return "expired"
        workflow.upsert_search_attributes([STATUS.value_set("Running")])
        await workflow.execute_activity(
            touch,
            {"sink": input["sink"], "key": self.approval_id, "arguments": turn["call"]["arguments"]},
            start_to_close_timeout=TIMEOUT,
        )
        answer = await workflow.execute_activity(
            model, {"turn": 1}, start_to_close_timeout=TIMEOUT
        )
        workflow.upsert_search_attributes([STATUS.value_set("Completed")])
        return answer["content"]

    @workflow.update(name="decide")
    def decide(self, decision: dict) -> dict:
        self.decided = True
        return {"accepted": True, "approvalId": self.approval_id}

    @decide.validator
    def validate_decide(self, decision: dict) -> None:
        if self.decided or decision.get("approvalId") != self.approval_id:
            raise ValueError(f"unknown or decided approval {decision.get('approvalId')}")

    @workflow.query(name="pending")
    def pending(self) -> str:
        return "" if self.decided else self.approval_id


async def main() -> None:
    address, task_queue, max_cached = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[NullFlow, GatedAgent],
        activities=[touch, model],
        max_cached_workflows=max_cached,
    )
    async with worker:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
