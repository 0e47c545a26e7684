#!/usr/bin/env bash
# Worker memory (issue 14): the RSS of `countersign worker` (cache 200) as
# runs wait for approval and as runs complete, for this checkout and, side by
# side in the same run, a baseline build.
#
#   ./scripts/worker-memory.sh                  # this checkout only
#   WORKER_MEMORY_BASELINE=f55a027 ./scripts/worker-memory.sh
#                                               # also a build of that commit
#
# Builds `countersign` (release) for this checkout and, when
# WORKER_MEMORY_BASELINE names a commit, for that commit too (in a temporary
# git worktree, same target folder); WORKER_MEMORY_BASELINE_BIN names an
# already built baseline binary instead. Then runs
# bench/python/worker_memory.py (fresh dev servers and workers per binary and
# phase; see its docstring), writes target/bench/worker-memory.json and copies
# it to bench/results/ (BENCH_NO_COPY=1 leaves bench/results/ alone).
# Knobs: WORKER_MEMORY_WAITING (1000,10000), WORKER_MEMORY_COMPLETED
# (2000,10000), WORKER_MEMORY_PHASES (waiting,completed),
# WORKER_MEMORY_CONCURRENCY (20), WORKER_MEMORY_CACHE (200).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root="$(countersign_root)"
cd "$root"
countersign_require_cargo
countersign_ensure_temporal
countersign_ensure_python_sdk
[[ -n "${COUNTERSIGN_PYTHON:-}" ]] || countersign_die "no Python with the Temporal SDK (see above)"

target="${CARGO_TARGET_DIR:-$root/target}"
out_dir="$target/bench"
mkdir -p "$out_dir/worker-memory-logs"

workers=()
if [[ -n "${WORKER_MEMORY_BASELINE_BIN:-}" ]]; then
  workers+=(--worker "baseline=$WORKER_MEMORY_BASELINE_BIN")
elif [[ -n "${WORKER_MEMORY_BASELINE:-}" ]]; then
  rev="$(git rev-parse --short "$WORKER_MEMORY_BASELINE")"
  tree="$(mktemp -d)"
  git worktree add --detach "$tree" "$rev" >/dev/null
  trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
  echo "worker-memory: building the baseline ($rev)" >&2
  CARGO_TARGET_DIR="$target" cargo build --release --manifest-path "$tree/Cargo.toml" \
    -p countersign --bin countersign
  cp "$target/release/countersign" "$out_dir/countersign-$rev"
  workers+=(--worker "baseline-$rev=$out_dir/countersign-$rev")
fi
echo "worker-memory: building this checkout" >&2
cargo build --release -p countersign --bin countersign
current="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+changes')"
cp "$target/release/countersign" "$out_dir/countersign-current"
workers+=(--worker "current-$current=$out_dir/countersign-current")

echo "worker-memory: load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >&2
"$COUNTERSIGN_PYTHON" bench/python/worker_memory.py "${workers[@]}" \
  --waiting "${WORKER_MEMORY_WAITING:-1000,10000}" \
  --completed "${WORKER_MEMORY_COMPLETED:-2000,10000}" \
  --phases "${WORKER_MEMORY_PHASES:-waiting,completed}" \
  --concurrency "${WORKER_MEMORY_CONCURRENCY:-20}" \
  --cache "${WORKER_MEMORY_CACHE:-200}" \
  --temporal "${TEMPORAL_CLI:-temporal}" \
  --logs "$out_dir/worker-memory-logs" \
  --out "$out_dir/worker-memory.json" >/dev/null

"$COUNTERSIGN_PYTHON" - "$out_dir/worker-memory.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for label, phases in report["workers"].items():
    for phase, result in phases.items():
        rss = ", ".join(f"{l['runs']}: {l['rss_mib']} MiB" for l in result["levels"])
        print(f"{label:28} {phase:9} {rss}  (last/first {result['ratio_last_to_first']})")
EOF
if [[ -z "${BENCH_NO_COPY:-}" ]]; then
  mkdir -p bench/results
  cp "$out_dir/worker-memory.json" bench/results/
  echo "worker-memory: results in bench/results/worker-memory.json" >&2
fi
