"""Runs one PayablesAgent workflow (OpenAI Agents SDK on Temporal) with a
worker of its own and prints its result as one JSON line.

    python run_agent.py --address 127.0.0.1:7233 --workflow-id payables-1 \
        --prompt "Pay invoice INV-7 of 250 to ACME" --pay-url http://127.0.0.1:8099/payments \
        [--fake-model | --model-base-url URL]

The model: `--fake-model` starts fake_model.py (no account needed);
`--model-base-url` points at any OpenAI-compatible Chat Completions server
(key from OPENAI_API_KEY); neither: OpenAI itself. Countersign's worker must
serve the agent `payments` (examples/gate/agents/) on the gate's task queue.
"""

import argparse
import asyncio
import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from agents import set_tracing_disabled  # noqa: E402
from agents.models.openai_provider import OpenAIProvider  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.openai_agents import (  # noqa: E402
    ModelActivityParameters,
    OpenAIAgentsPlugin,
)
from temporalio.worker import Worker  # noqa: E402

import fake_model  # noqa: E402
from agent_workflow import PayablesAgent  # noqa: E402
from workflow import pay  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--task-queue", default=f"payables-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--gate-task-queue", default="countersign")
    parser.add_argument("--agent", default="payments")
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--requester", default="alice@example.com")
    parser.add_argument("--pay-url", required=True)
    parser.add_argument("--fake-model", action="store_true")
    parser.add_argument("--fake-model-log")
    parser.add_argument("--model-base-url")
    args = parser.parse_args()

    provider = None
    base_url = fake_model.serve(args.fake_model_log) if args.fake_model else args.model_base_url
    if base_url:
        # An OpenAI-compatible server speaks Chat Completions; nothing is
        # sent to OpenAI, traces included.
        set_tracing_disabled(True)
        provider = OpenAIProvider(
            openai_client=AsyncOpenAI(
                base_url=base_url,
                api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
                max_retries=0,
            ),
            use_responses=False,
        )
    plugin = OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=60)),
        model_provider=provider,
    )
    client = await Client.connect(args.address, plugins=[plugin])
    async with Worker(
        client, task_queue=args.task_queue, workflows=[PayablesAgent], activities=[pay]
    ):
        result = await client.execute_workflow(
            PayablesAgent.run,
            {
                "prompt": args.prompt,
                "requester": args.requester,
                "payUrl": args.pay_url,
                "agent": args.agent,
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
