#!/usr/bin/env bash
# Schemathesis against `countersign serve`'s own /openapi.json: a
# `countersign dev --no-demo` stack on free ports with a fresh reviewer token,
# then every operation fuzzed from the document (examples, coverage, fuzzing
# and stateful phases). Fails on a 5xx, a response that breaks the document,
# or a schema-valid request the server rejects. Part of scripts/reliability.sh.
# Installs schemathesis (pinned) into a virtualenv under the target dir.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
countersign_require_cargo
countersign_ensure_temporal
cd "$(countersign_root)"

target="${CARGO_TARGET_DIR:-$(countersign_root)/target}"
venv="$target/schemathesis-venv"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

cargo build --quiet -p countersign --bin countersign
state="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc="$(free_port)"; ui="$(free_port)"; http="$(free_port)"
"$target/debug/countersign" dev --no-demo --port "$grpc" --ui-port "$ui" \
  --http "127.0.0.1:$http" --state-dir "$state" >"$state/dev.log" 2>&1 &
dev=$!
# errexit applies inside the trap too: the stopped server's exit status must
# not become the script's.
trap 'kill "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$state"' EXIT

for _ in $(seq 1 120); do
  if [[ -s "$state/dev-token" ]] && curl -sf "http://127.0.0.1:$http/healthz" >/dev/null; then break; fi
  kill -0 "$dev" 2>/dev/null || { cat "$state/dev.log" >&2; countersign_die "countersign dev exited"; }
  sleep 0.5
done
token="$(cat "$state/dev-token")"

"$venv/bin/schemathesis" run "http://127.0.0.1:$http/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  --seed 1 \
  "$@"
