"""Draws the inbox chart of a proof.json run with the waiting phase
(crates/countersign/benches/proof.rs, `scripts/bench.sh inbox`).

Usage: python bench/plot_inbox.py inbox.json inbox.png

Two panels against the number of waiting runs (log scale): the time of the
whole list (every page) and of the first API and dashboard pages, with the
worker running and stopped; and the worker's RSS.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source, target):
    report = json.load(open(source))
    levels = [lv for lv in report["waiting"]["countersign"]["levels"] if lv.get("inbox")]
    runs = [lv["runs"] for lv in levels]
    fig, (times, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for state, style in (("worker_running", "-"), ("worker_stopped", "--")):
        label = state.replace("_", " ")
        times.plot(runs, [lv["inbox"][state]["list_all_seconds"] * 1000 for lv in levels],
                   style, marker="o", color="#4c72b0", label=f"whole list ({label})")
        times.plot(runs, [lv["inbox"][state]["api_first_page_ms"] for lv in levels],
                   style, marker="s", color="#dd8452", label=f"GET /approvals first page ({label})")
        times.plot(runs, [lv["inbox"][state]["dashboard_first_page_ms"] for lv in levels],
                   style, marker="^", color="#55a868", label=f"dashboard first page ({label})")
    times.axhline(300, color="#c44e52", linewidth=0.8, label="first-page target (300 ms)")
    times.axhline(5000, color="#8172b2", linewidth=0.8, label="whole-list target at 10,000 (5 s)")
    times.set_xscale("log")
    times.set_yscale("log")
    times.set_xlabel("runs waiting for approval")
    times.set_ylabel("ms (median of 3)")
    times.set_title("The inbox reads visibility")
    times.legend(fontsize=7)
    memory.plot(runs, [lv["rss_mib"] for lv in levels], marker="o", color="#4c72b0")
    memory.set_xscale("log")
    memory.set_xlabel("runs waiting for approval")
    memory.set_ylabel("worker RSS (MiB), cache 200")
    memory.set_title("countersign worker memory")
    memory.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
