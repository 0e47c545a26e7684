"""Draws the chart of a proof.json (crates/countersign/benches/proof.rs).

Usage: python bench/plot.py proof.json proof.png [proof.md]

Four panels: serial decision -> side effect latency (p50/p90/p99) per flow on
each server, the same at the configured concurrency, complete runs per second
at that concurrency, and worker RSS with runs left waiting.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["rust-null", "rust-null-agent", "rust-null-agent-sa", "countersign", "python-null", "python-gated"]
COLORS = {"p50": "#4c72b0", "p90": "#dd8452", "p99": "#c44e52"}


def flows_of(section):
    return [f for f in ORDER if f in section]


def latency_panel(ax, servers, mode, title):
    labels, groups = [], []
    for server, data in servers.items():
        for flow in flows_of(data[mode]):
            labels.append(f"{flow}\n{server}")
            groups.append(data[mode][flow]["decision_to_effect_ms"])
    xs = range(len(labels))
    width = 0.27
    for i, q in enumerate(["p50", "p90", "p99"]):
        ax.bar([x + (i - 1) * width for x in xs], [g[q] for g in groups], width,
               label=q, color=COLORS[q])
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("ms (log)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def main():
    report = json.load(open(sys.argv[1]))
    servers = report.get("servers", {})
    conc = report["config"]["concurrency"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    if servers:
        latency_panel(axes[0][0], servers, "serial",
                      "decision -> tool side effect, serial")
        latency_panel(axes[0][1], servers, "concurrent",
                      f"decision -> tool side effect, {conc} concurrent")
        ax = axes[1][0]
        labels, values = [], []
        for server, data in servers.items():
            for flow in flows_of(data["concurrent"]):
                labels.append(f"{flow}\n{server}")
                values.append(data["concurrent"][flow]["runs_per_second"])
        bars = ax.bar(range(len(labels)), values, color="#55a868")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("complete runs / s")
        ax.set_title(f"throughput, {conc} runs in flight", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    ax = axes[1][1]
    for sdk, data in report.get("waiting", {}).items():
        levels = [lv for lv in data["levels"] if lv["runs"] > 0]
        ax.plot([lv["runs"] for lv in levels], [lv["rss_mib"] for lv in levels],
                marker="o", label=f"{sdk} worker RSS")
    ax.set_xscale("log")
    ax.set_xlabel("runs waiting for approval")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"worker memory, max_cached_workflows={report['config']['max_cached_workflows']}",
        fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    machine = report.get("machine", {})
    fig.suptitle(
        f"Countersign proof bench: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}), "
        f"load {report.get('load_average_at_start')} -> {report.get('load_average_at_end')}",
        fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as out:
            out.write(tables(report))


def fmt(summary):
    return " / ".join(f"{summary[q]:.1f}" for q in ["p50", "p90", "p99", "max"])


def tables(report):
    """The report as Markdown tables (the figures BENCHMARKS.md quotes)."""
    lines = [
        f"Load average at start {report.get('load_average_at_start')}, "
        f"at end {report.get('load_average_at_end')}; config {json.dumps(report['config'])}.",
        "",
    ]
    for server, data in report.get("servers", {}).items():
        for mode in ["serial", "concurrent"]:
            section = data[mode]
            lines += [
                f"**{server} server, {mode}**"
                + (f" ({report['config']['concurrency']} in flight)" if mode == "concurrent" else ""),
                "",
                "| flow | runs | decision -> side effect p50 / p90 / p99 / max ms"
                " | decision -> run closed p50 / p90 / p99 / max ms | decision RPC p50 ms"
                " | start -> pending p50 ms | runs/s | CPU ms per run (server / worker / driver) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for flow in flows_of(section):
                e = section[flow]
                if mode == "serial":
                    rate = data["serial_runs_per_second"].get(flow, 0)
                    cpu = ""
                else:
                    rate = e["runs_per_second"]
                    c = e["cpu_ms_per_run"]
                    worker = next((v for k, v in c.items() if k.startswith("worker")), 0)
                    cpu = f"{c.get('server', 0):.1f} / {worker:.1f} / {c.get('driver', 0):.1f}"
                lines.append(
                    f"| {flow} | {e['runs']} | {fmt(e['decision_to_effect_ms'])}"
                    f" | {fmt(e['decision_to_complete_ms'])} | {e['decision_rpc_ms']['p50']:.1f}"
                    f" | {e['start_to_pending_ms']['p50']:.1f} | {rate:.1f} | {cpu} |"
                )
            lines.append("")
        lines += [f"**{server} server, one run's history**", "",
                  "| flow | events | workflow tasks |", "|---|---|---|"]
        for flow in flows_of(data["histories"]):
            h = data["histories"][flow]
            lines.append(f"| {flow} | {h['events']} | {h['workflow_tasks']} |")
        lines.append("")
    for sdk, data in report.get("waiting", {}).items():
        lines += [
            f"**waiting runs, {sdk}** (max_cached_workflows={report['config']['max_cached_workflows']})",
            "",
            "| runs waiting | worker RSS MiB | peak RSS MiB | worker idle CPU % | server idle CPU %"
            " | server RSS MiB | DB MiB | s until all waiting |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for lv in data["levels"]:
            if lv["runs"] == 0:
                lines.append(f"| 0 (worker started) | {lv['rss_mib']:.1f} | | | | | | |")
                continue
            lines.append(
                f"| {lv['runs']} | {lv['rss_mib']:.1f} | {lv['peak_rss_mib']:.1f}"
                f" | {lv['worker_idle_cpu_percent']:.2f} | {lv['server_idle_cpu_percent']}"
                f" | {lv['server_rss_mib']} | {lv['db_mib']:.1f} | {lv['seconds_to_all_waiting']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
