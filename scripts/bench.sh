#!/usr/bin/env bash
# The issue-6 benchmark in one command: sets up the Python peer (a venv under
# target/bench/venv with bench/python/requirements.txt), runs
# `cargo bench -p countersign --bench proof` (release build; dev servers,
# workers and the driver on this machine), then draws the chart.
#
# Output: target/bench/proof.json and target/bench/proof.png, copied to
# bench/results/. Knobs (see crates/countersign/benches/proof.rs):
# COUNTERSIGN_BENCH_DECISIONS (1000), COUNTERSIGN_BENCH_DEFAULT_DECISIONS (200),
# COUNTERSIGN_BENCH_CONCURRENCY (20), COUNTERSIGN_BENCH_WAITING
# (100,1000,10000), COUNTERSIGN_BENCH_CACHE, COUNTERSIGN_BENCH_PHASES
# (latency,waiting), COUNTERSIGN_BENCH_SERVERS (tuned,default).
# BENCH_NO_COPY=1 leaves bench/results/ alone (for trial runs).
#
# `scripts/bench.sh inbox` runs the inbox phase alone (issue 14): the
# waiting phase for `AgentRun` at COUNTERSIGN_BENCH_WAITING (100,1000,10000)
# waiting runs, with at each level the whole list, the first
# `GET /approvals?pageSize=100` page and the dashboard's first page, with
# the worker running and stopped, and the worker's RSS. Output:
# bench/results/inbox.{json,png}.
#
# `scripts/bench.sh payloads` runs the payload benchmark (issue 16): agents
# of 10, 100 and 200 turns reading 4 KB or 64 KB a turn, with and without a
# payload store; history and store bytes. Output:
# bench/results/payloads.json (see crates/countersign/benches/payloads.rs).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root="$(countersign_root)"
cd "$root"
countersign_require_cargo
countersign_ensure_temporal

target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/bench/venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import temporalio, matplotlib' 2>/dev/null; then
  echo "bench: setting up $venv (bench/python/requirements.txt)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r bench/python/requirements.txt
fi

echo "bench: load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >&2
if [[ "${1:-}" == "payloads" ]]; then
  export COUNTERSIGN_BENCH_OUT="$target/bench/payloads.json"
  cargo bench -p countersign --bench payloads >/dev/null
  if [[ -z "${BENCH_NO_COPY:-}" ]]; then
    mkdir -p bench/results
    cp "$target/bench/payloads.json" bench/results/
    echo "bench: results in bench/results/payloads.json" >&2
  fi
  exit 0
fi
if [[ "${1:-}" == "inbox" ]]; then
  export COUNTERSIGN_BENCH_PHASES=waiting
  export COUNTERSIGN_BENCH_OUT="$target/bench/inbox.json"
  cargo bench -p countersign --bench proof >/dev/null
  "$venv/bin/python" bench/plot_inbox.py "$target/bench/inbox.json" "$target/bench/inbox.png"
  if [[ -z "${BENCH_NO_COPY:-}" ]]; then
    mkdir -p bench/results
    cp "$target/bench/inbox.json" "$target/bench/inbox.png" bench/results/
    echo "bench: results in bench/results/inbox.{json,png}" >&2
  fi
  exit 0
fi
export COUNTERSIGN_BENCH_PYTHON="$venv/bin/python"
export COUNTERSIGN_BENCH_OUT="$target/bench/proof.json"
cargo bench -p countersign --bench proof >/dev/null
"$venv/bin/python" bench/plot.py "$target/bench/proof.json" "$target/bench/proof.png" "$target/bench/proof.md"
if [[ -z "${BENCH_NO_COPY:-}" ]]; then
  mkdir -p bench/results
  cp "$target/bench/proof.json" "$target/bench/proof.png" "$target/bench/proof.md" bench/results/
  echo "bench: results in bench/results/proof.{json,png,md}" >&2
fi
