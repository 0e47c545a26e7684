#!/usr/bin/env bash
# The reliability suite at full scale (issue 6): 100 runs through worker
# SIGKILLs at every stage, 100 waiting runs across a Temporal server restart
# (SQLite file), 1,000 runs with racing decisions, and bad input from every
# door, including schemathesis against /openapi.json (scripts/schemathesis.sh).
# Reports land in <target dir>/reliability/*.json.
#
# `cargo test` runs the same scenarios at a small scale on every test run;
# this script sets COUNTERSIGN_RELIABILITY=full and runs only them, one at a
# time (each one loads the machine on its own). Arguments go to `cargo test`.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

countersign_require_cargo
countersign_ensure_temporal
cd "$(countersign_root)"
COUNTERSIGN_RELIABILITY=full cargo test -p countersign --test e2e "$@" \
  reliability:: -- --test-threads=1
# Bad input at the HTTP API, generated from its own OpenAPI document.
bash scripts/schemathesis.sh
