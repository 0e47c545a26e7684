#!/usr/bin/env bash
# Sets up and runs the local stack: Temporal dev server (SQLite in
# .countersign/), search attributes, worker, and a demo run that pauses on a
# gated payment. Arguments go to `countersign dev` (try --help).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

countersign_require_cargo
countersign_ensure_temporal
cd "$(countersign_root)"
exec cargo run -p countersign -- dev "$@"
