"""Draws the chart of a proof.json (crates/countersign/benches/proof.rs).

Usage: python bench/plot.py proof.json proof.png

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


if __name__ == "__main__":
    main()
