#!/usr/bin/env bash
# Runs the whole test suite: unit and property tests, and the end-to-end
# tests against a real `temporal server start-dev`. Arguments go to
# `cargo test`, e.g. a name filter (`./scripts/test.sh expires`) or
# `-- --nocapture`.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

countersign_require_cargo
countersign_ensure_temporal
countersign_ensure_chromium
countersign_ensure_python_sdk
countersign_ensure_node_example
cd "$(countersign_root)"
exec cargo test --workspace --all-targets "$@"
