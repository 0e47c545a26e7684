"""Runs one PayInvoice workflow with a worker of its own and prints its
result as one JSON line.

    python run.py --address 127.0.0.1:7233 --workflow-id pay-1 \
        --invoice INV-7 --amount 250 --to ACME --pay-url http://127.0.0.1:8099/payments

Countersign's worker must serve the agent `payments` (agents/payments.toml)
on the gate's task queue (default `countersign`).
"""

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from workflow import PayInvoice, pay  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--task-queue", default=f"pay-invoice-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--gate-task-queue", default="countersign")
    parser.add_argument("--agent", default="payments")
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--invoice", required=True)
    parser.add_argument("--amount", type=float, required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--requester", default="alice@example.com")
    parser.add_argument("--pay-url", required=True)
    args = parser.parse_args()

    client = await Client.connect(args.address)
    async with Worker(
        client, task_queue=args.task_queue, workflows=[PayInvoice], activities=[pay]
    ):
        result = await client.execute_workflow(
            PayInvoice.run,
            {
                "agent": args.agent,
                "invoice": args.invoice,
                "amount": args.amount,
                "to": args.to,
                "requester": args.requester,
                "payUrl": args.pay_url,
                "gateTaskQueue": args.gate_task_queue,
            },
            id=args.workflow_id,
            task_queue=args.task_queue,
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    # Done and printed (an error above exits non-zero as usual). Skip
    # interpreter finalization: the SDK's core threads may still be running
    # when CPython finalizes, which now and then aborts the process with
    # "PyGILState_Release: thread state ... must be current" after the work
    # is over (seen in CI).
    sys.stdout.flush()
    os._exit(0)
