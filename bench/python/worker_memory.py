"""Worker memory (issue 14): does `countersign worker` stay flat as runs wait
and as runs complete?

For each worker binary given (`--worker LABEL=PATH`, repeatable, so a build
from before a change and one from after it are measured side by side in one
run), on fresh in-memory dev servers started as `countersign dev` starts them
(the Countersign search attributes and the two dynamic-config values):

- waiting: a fresh `countersign worker --agents DIR --max-cached-workflows
  CACHE`; gated runs are started (CONCURRENCY starts in flight) until each
  level of `--waiting` waits for approval (counted by visibility); at each
  level, after a settle pause, the worker's RSS and peak RSS from /proc;
- completed: another fresh server and worker; whole gated runs (start,
  `pending_approvals` query until the approval is open, `decide` update,
  result), CONCURRENCY in flight, until each level of `--completed` has
  completed; the RSS at each level.

The agent has one gated tool that needs no network (`append_todo` with
`requires_approval = true`) and a scripted model: one call, then an answer.
Writes one JSON document (`--out`). Run by `scripts/worker-memory.sh`.
"""

import argparse
import asyncio
import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from temporalio.client import Client

AGENT = """
name = "memory"
description = "One gated todo, then an answer"
[model]
provider = "scripted"
[[model.steps]]
say = "adding a todo"
calls = [{ tool = "todo", arguments = { item = "check the worker's memory" } }]
[[model.steps]]
say = "done"
[[tools]]
name = "todo"
requires_approval = true
builtin = { kind = "append_todo", path = "todo.md" }
"""

# As countersign_proto::contract::SEARCH_ATTRIBUTES and
# countersign::devserver::DYNAMIC_CONFIG.
SEARCH_ATTRIBUTES = [
    "CountersignStatus=Keyword",
    "CountersignPendingTools=KeywordList",
    "CountersignApprovalIds=KeywordList",
    "CountersignAgent=Keyword",
    "CountersignRequester=Keyword",
    "CountersignApprovers=KeywordList",
]
DYNAMIC_CONFIG = [
    "history.transferProcessorMaxPollRPS=1000",
    "matching.forwarderMaxRatePerSecond=1000",
]
TASK_QUEUE = "countersign"
WAITING_QUERY = "WorkflowType = 'AgentRun' AND CountersignStatus = 'AwaitingApproval'"


def load_average():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def proc_stats(pid):
    """RSS and peak RSS (MiB) and CPU seconds of a process."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields[name] = rest.split()
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    after = stat[stat.rfind(")") + 2 :].split()
    ticks = int(after[11]) + int(after[12])
    return {
        "rss_mib": round(int(fields["VmRSS"][0]) / 1024, 2),
        "peak_rss_mib": round(int(fields["VmHWM"][0]) / 1024, 2),
        "worker_cpu_s": round(ticks / os.sysconf("SC_CLK_TCK"), 2),
    }


def die_with_parent():
    """Run in the child before exec: SIGKILL it when this driver dies."""
    ctypes.CDLL("libc.so.6").prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """A fresh dev server and a fresh worker on it; both stopped on exit."""

    def __init__(self, args, label, binary, phase, agents):
        self.args, self.label, self.binary, self.phase = args, label, binary, phase
        self.agents = agents
        self.server = self.worker = None

    async def __aenter__(self):
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        cmd = [self.args.temporal, "server", "start-dev", "--ip", "127.0.0.1",
               "--port", str(port), "--log-level", "warn", "--headless"]
        for sa in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", sa]
        for value in DYNAMIC_CONFIG:
            cmd += ["--dynamic-config-value", value]
        self.server = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = await Client.connect(self.address)
                await self.client.count_workflows(WAITING_QUERY)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        log = Path(self.args.logs) / f"worker-{self.label}-{self.phase}.log"
        env = dict(os.environ, TEMPORAL_ADDRESS=self.address, TEMPORAL_NAMESPACE="default")
        self.log = open(log, "w")
        self.worker = subprocess.Popen(
            [self.binary, "worker", "--agents", self.agents,
             "--max-cached-workflows", str(self.args.cache)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 120
        while "polling" not in log.read_text():
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.label} worker did not start; see {log}")
            await asyncio.sleep(0.2)
        return self

    async def __aexit__(self, *exc):
        for proc in (self.worker, self.server):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.log.close()


async def pool(concurrency, start, end, job):
    """Runs job(i) for i in [start, end), `concurrency` at a time."""
    counter = iter(range(start, end))

    async def lane():
        for i in counter:
            await job(i)

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def measure(stack, runs, seconds, settle):
    await asyncio.sleep(settle)
    entry = {"runs": runs, "seconds": round(seconds, 1)}
    entry.update(proc_stats(stack.worker.pid))
    entry["load_average"] = load_average()
    print(f"  {stack.label} {stack.phase} {runs}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    return entry


async def waiting_phase(stack, args):
    client = stack.client
    await asyncio.sleep(args.settle)
    levels = [dict(runs=0, **proc_stats(stack.worker.pid))]
    started = 0

    async def start(i):
        await client.start_workflow(
            "AgentRun",
            {"agent": "memory", "prompt": "wait", "requester": "bench"},
            id=f"wait-{i}",
            task_queue=TASK_QUEUE,
        )

    for level in args.waiting:
        begin = time.monotonic()
        await pool(args.concurrency, started, level, start)
        started = max(started, level)
        deadline = time.monotonic() + 3600
        while (await client.count_workflows(WAITING_QUERY)).count < level:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{level} runs not waiting after an hour")
            await asyncio.sleep(0.5)
        levels.append(await measure(stack, level, time.monotonic() - begin, args.settle))
    return {"levels": levels, "ratio_last_to_first": ratio(levels)}


async def completed_phase(stack, args):
    client = stack.client
    await asyncio.sleep(args.settle)
    levels = [dict(runs=0, **proc_stats(stack.worker.pid))]
    done = 0

    async def complete(i):
        workflow_id = f"done-{i}"
        handle = await client.start_workflow(
            "AgentRun",
            {"agent": "memory", "prompt": "complete", "requester": "bench"},
            id=workflow_id,
            task_queue=TASK_QUEUE,
        )
        deadline = time.monotonic() + 120
        while True:
            pending = await handle.query("pending_approvals")
            if pending:
                approval_id = pending[0]["approvalId"]
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workflow_id} never waited for approval")
            await asyncio.sleep(0.02)
        decision = {
            "approvalId": approval_id,
            "kind": "DECISION_KIND_APPROVE",
            "reviewer": "bench-reviewer",
            "scope": "DECISION_SCOPE_ONCE",
        }
        await handle.execute_update(
            "decide", decision, id=f"decide:{approval_id}:bench-reviewer:approve"
        )
        state = await handle.result()
        if state.get("finalAnswer") != "done":
            raise RuntimeError(f"{workflow_id} ended without its answer: {state}")

    for level in args.completed:
        begin = time.monotonic()
        await pool(args.concurrency, done, level, complete)
        done = max(done, level)
        levels.append(await measure(stack, level, time.monotonic() - begin, args.settle))
    return {"levels": levels, "ratio_last_to_first": ratio(levels)}


def ratio(levels):
    """RSS at the last level over RSS at the first non-zero level."""
    if len(levels) < 2:
        return None
    return round(levels[-1]["rss_mib"] / levels[1]["rss_mib"], 3)


def levels_arg(text):
    return [int(x) for x in text.split(",") if x.strip()]


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="append", required=True, metavar="LABEL=PATH")
    parser.add_argument("--waiting", type=levels_arg, default=[1000, 10000])
    parser.add_argument("--completed", type=levels_arg, default=[2000, 10000])
    parser.add_argument("--phases", default="waiting,completed")
    parser.add_argument("--cache", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--temporal", default="temporal")
    parser.add_argument("--logs", default=tempfile.gettempdir())
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    workers = []
    for entry in args.worker:
        label, _, path = entry.partition("=")
        if not path or not os.access(path, os.X_OK):
            parser.error(f"--worker {entry}: not LABEL=<an executable>")
        workers.append((label, path))

    report = {
        "benchmark": "worker-memory",
        "when_unix": int(time.time()),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_average(),
        "config": {
            "waiting_levels": args.waiting,
            "completed_levels": args.completed,
            "max_cached_workflows": args.cache,
            "concurrency": args.concurrency,
            "settle_seconds": args.settle,
            "workers": [{"label": l, "path": p} for l, p in workers],
        },
        "workers": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        agents = Path(scratch) / "agents"
        agents.mkdir()
        (agents / "memory.toml").write_text(AGENT)
        for label, path in workers:
            entry = report["workers"].setdefault(label, {})
            for phase in args.phases.split(","):
                print(f"== {label}: {phase}", file=sys.stderr, flush=True)
                async with Stack(args, label, path, phase, str(agents)) as stack:
                    run = waiting_phase if phase == "waiting" else completed_phase
                    entry[phase] = await run(stack, args)
                # Written after every phase: a long run keeps what it measured.
                report["load_average_at_end"] = load_average()
                Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
