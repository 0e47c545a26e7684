#!/usr/bin/env bash
# GitHub's published OpenAPI document (npm package @octokit/openapi, about
# 13 MB of JSON, 1,200+ operations) as an API source, end to end:
#
#  1. fetches the document and Stoplight Prism (both pinned) from npm into
#     a cache folder, and links the document as
#     bench/github/api.github.com.json (ignored by git);
#  2. times tools::openapi::operations() on it (the worker crate's
#     openapi_tools example, release build: fastest of 3) for the three
#     operations of bench/github/github-issues.toml, prints the size of
#     their tools' JSON, and checks that without an allow-list the
#     document is refused;
#  3. serves a Prism mock of it with request validation on a free port and
#     checks that an invalid `issues/create` gets 422 and a valid one 201;
#  4. starts `countersign dev` (Temporal and search attributes) and a worker
#     with the agents of bench/github on a task queue of its own, starts
#     a github-issues run, approves its github.issues/create call, checks
#     that Prism answered 201 and prints the size of the run's history.
#     This needs the agent registry (`countersign worker --agents DIR`,
#     `run start --agent NAME`); --measure-only stops after step 3.
#
# Usage: scripts/github-openapi.sh [--measure-only]
# Needs node/npm (the npm registry), cargo, curl; step 4 the Temporal CLI.
# The cache is ${XDG_CACHE_HOME:-$HOME/.cache}/countersign/octokit.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
countersign_require_cargo
command -v npm >/dev/null 2>&1 || countersign_die "npm is not on PATH: install Node.js (with npm) and retry"
command -v curl >/dev/null 2>&1 || countersign_die "curl is not on PATH"
cd "$(countersign_root)"

measure_only=false
case "${1:-}" in
  "") ;;
  --measure-only) measure_only=true ;;
  *) countersign_die "usage: scripts/github-openapi.sh [--measure-only]" ;;
esac

OCTOKIT_OPENAPI_VERSION=23.0.2
PRISM_VERSION=5.16.0
OPERATIONS=(issues/create issues/get repos/get)

cache="${XDG_CACHE_HOME:-$HOME/.cache}/countersign/octokit"
target="${CARGO_TARGET_DIR:-$(countersign_root)/target}"
state="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  # Each was started with setsid: its process group goes with it.
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$state"
}
# errexit applies inside the trap too: a stopped process's status must not
# become the script's.
trap 'cleanup || true' EXIT

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
# json_get FILE EXPRESSION: prints the value of a JavaScript expression over
# the JSON in FILE (`d`), or nothing when it is undefined.
json_get() {
  node -e 'const d=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const v=eval(process.argv[2]);if(v!==undefined&&v!==null)console.log(typeof v==="string"?v:JSON.stringify(v))' "$1" "$2"
}
installed_version() {
  node -p 'require(process.argv[1]).version' "$cache/node_modules/$1/package.json" 2>/dev/null || true
}

# ---- 1. the document and Prism --------------------------------------------
mkdir -p "$cache"
if [[ "$(installed_version @octokit/openapi)" != "$OCTOKIT_OPENAPI_VERSION" \
   || "$(installed_version @stoplight/prism-cli)" != "$PRISM_VERSION" ]]; then
  echo "github-openapi: installing @octokit/openapi@$OCTOKIT_OPENAPI_VERSION and @stoplight/prism-cli@$PRISM_VERSION into $cache" >&2
  npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
    "@octokit/openapi@$OCTOKIT_OPENAPI_VERSION" "@stoplight/prism-cli@$PRISM_VERSION" >&2
fi
document="$cache/node_modules/@octokit/openapi/generated/api.github.com.json"
prism="$cache/node_modules/.bin/prism"
[[ -s "$document" ]] || countersign_die "$document is missing after npm install"
[[ -x "$prism" ]] || countersign_die "$prism is missing after npm install"
ln -sfn "$document" bench/github/api.github.com.json
echo "document: $document ($(wc -c <"$document") bytes)"

# ---- 2. operations() on it ------------------------------------------------
cargo build --quiet --release -p countersign-worker --example openapi_tools
"$target/release/examples/openapi_tools" "$document" "${OPERATIONS[@]}" \
  >"$state/tools.json" 2>"$state/timing.txt" \
  || { cat "$state/timing.txt" >&2; countersign_die "operations() failed on the document"; }
echo "operations(): $(cat "$state/timing.txt")"
tools="$(json_get "$state/tools.json" 'd.map(t => t.name).join(" ")')"
[[ "$tools" == "github.repos/get github.issues/create github.issues/get" ]] \
  || countersign_die "expected the three tools, got: $tools"
if "$target/release/examples/openapi_tools" "$document" >/dev/null 2>"$state/refused.txt"; then
  countersign_die "operations() accepted the whole document without an allow-list"
fi
grep -q 'operations = \[\.\.\.\]' "$state/refused.txt" \
  || { cat "$state/refused.txt" >&2; countersign_die "the refusal does not point to \`operations = [...]\`"; }
echo "without an allow-list: $(cat "$state/refused.txt")"

# ---- 3. a Prism mock that validates requests ------------------------------
# Prism validates request bodies with ajv, which rejects OpenAPI 3.0's
# `nullable` on a schema without `type` (GitHub's `milestone` in
# issues/create is one); Prism then silently validates no body at all. Its
# copy of the document drops those `nullable`s (a `null` there gets 422 from
# the mock, not from GitHub).
prism_document="$cache/api.github.com.prism.json"
if [[ ! -s "$prism_document" || "$document" -nt "$prism_document" ]]; then
  node -e '
    const fs = require("fs");
    const [source, target] = process.argv.slice(1);
    const doc = JSON.parse(fs.readFileSync(source, "utf8"));
    const walk = (v) => {
      if (Array.isArray(v)) return v.forEach(walk);
      if (v === null || typeof v !== "object") return;
      if (v.nullable === true && !("type" in v)) delete v.nullable;
      Object.values(v).forEach(walk);
    };
    walk(doc);
    fs.writeFileSync(target + ".tmp", JSON.stringify(doc));
    fs.renameSync(target + ".tmp", target);
  ' "$document" "$prism_document"
fi
prism_port="$(free_port)"
prism_command=("$prism" mock --host 127.0.0.1 --port "$prism_port" "$prism_document")
echo "prism: ${prism_command[*]}"
setsid "${prism_command[@]}" >"$state/prism.log" 2>&1 &
pids+=($!)
# Prism reads and dereferences the 13 MB document first (about 15 s here).
for _ in $(seq 1 240); do
  grep -q "Prism is listening" "$state/prism.log" && break
  kill -0 "${pids[-1]}" 2>/dev/null || { tail -20 "$state/prism.log" >&2; countersign_die "prism exited"; }
  sleep 0.5
done
grep -q "Prism is listening" "$state/prism.log" \
  || { tail -20 "$state/prism.log" >&2; countersign_die "prism did not start in 120 s"; }
prism_url="http://127.0.0.1:$prism_port"
post_issue() {
  curl -s -o "$state/answer.json" -w '%{http_code}' -X POST \
    -H 'content-type: application/json' -d "$1" "$prism_url/repos/octo/hello/issues"
}
status="$(post_issue '{"body": "an issue without a title"}')"
[[ "$status" == 422 ]] || countersign_die "prism answered HTTP $status to an issue without a title (expected 422: no request validation?)"
status="$(post_issue '{"title": "Printer on floor 3 jams"}')"
[[ "$status" == 201 ]] || countersign_die "prism answered HTTP $status to a valid issue (expected 201)"
echo "prism validates: an issue without a title gets 422, a valid one 201"

if $measure_only; then
  exit 0
fi

# ---- 4. a run through countersign -----------------------------------------
countersign_ensure_temporal
cargo build --quiet -p countersign --bin countersign
countersign="$target/debug/countersign"
"$countersign" worker --help | grep -q -- '--agents' \
  || countersign_die "this countersign has no \`worker --agents DIR\` (the agent registry) yet; run with --measure-only"

grpc="$(free_port)"; ui="$(free_port)"; http="$(free_port)"
setsid "$countersign" dev --no-demo --port "$grpc" --ui-port "$ui" \
  --http "127.0.0.1:$http" --state-dir "$state/dev" >"$state/dev.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$state/dev.log" >&2; countersign_die "countersign dev exited"; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$http/healthz" >/dev/null \
  || { cat "$state/dev.log" >&2; countersign_die "countersign dev did not start in 60 s"; }
export TEMPORAL_ADDRESS="127.0.0.1:$grpc"

# A queue of its own: the dev stack's worker does not know github-issues.
queue="github-openapi-$$"
GITHUB_OPENAPI="$document" GITHUB_API_URL="$prism_url" \
  setsid "$countersign" worker --agents bench/github --task-queue "$queue" \
  >"$state/worker.log" 2>&1 &
pids+=($!)

"$countersign" run start --agent github-issues --prompt "File the printer issue" \
  --requester dev@example.com --task-queue "$queue" --json >"$state/started.json"
run="$(json_get "$state/started.json" 'd.workflowId')"
echo "run: $run"

# show_run: the run's state into $state/run.json.
show_run() { "$countersign" run show "$run" --json >"$state/run.json"; }
approval=""
for _ in $(seq 1 120); do
  show_run
  approval="$(json_get "$state/run.json" '(d.approvals || []).map(a => a.approvalId)[0]')"
  [[ -n "$approval" ]] && break
  case "$(json_get "$state/run.json" 'd.status')" in
    RUN_STATUS_COMPLETED | RUN_STATUS_FAILED | RUN_STATUS_CANCELLED)
      cat "$state/run.json" >&2
      countersign_die "the run ended without asking for approval" ;;
  esac
  sleep 0.5
done
[[ -n "$approval" ]] || { cat "$state/worker.log" >&2; countersign_die "no approval was asked for in 60 s"; }
tool="$(json_get "$state/run.json" 'd.approvals[0].tool.name')"
[[ "$tool" == "github.issues/create" ]] || countersign_die "the approval is for $tool, not github.issues/create"
"$countersign" approvals approve "$approval" --reviewer ops@example.com

for _ in $(seq 1 120); do
  show_run
  [[ "$(json_get "$state/run.json" 'd.status')" == RUN_STATUS_COMPLETED ]] && break
  sleep 0.5
done
[[ "$(json_get "$state/run.json" 'd.status')" == RUN_STATUS_COMPLETED ]] \
  || { cat "$state/run.json" >&2; countersign_die "the run did not complete in 60 s"; }
result="$(json_get "$state/run.json" 'd.transcript.filter(e => e.role === "tool").map(e => e.content)[0]')"
[[ "$result" == "HTTP 201 Created"* ]] \
  || countersign_die "github.issues/create answered: ${result:0:300}"
grep -q 'Responding with "201"' "$state/prism.log" || countersign_die "prism's log has no 201"
echo "github.issues/create: $(head -1 <<<"$result") from prism"
"${TEMPORAL_CLI:-temporal}" workflow show --workflow-id "$run" --address "$TEMPORAL_ADDRESS" --output json >"$state/history.json"
history_bytes="$(wc -c <"$state/history.json")"
echo "the run's history: $history_bytes bytes (temporal workflow show --output json)"
# How long resolving the agent and discovering the API's tools took in the
# run: each activity from scheduled to completed, from the history's times.
node -e '
const events = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).events;
const scheduled = {};
for (const e of events) {
  const a = e.activityTaskScheduledEventAttributes;
  if (a) scheduled[e.eventId] = [a.activityType.name, Date.parse(e.eventTime)];
  const c = e.activityTaskCompletedEventAttributes;
  if (c && scheduled[c.scheduledEventId]) {
    const [name, at] = scheduled[c.scheduledEventId];
    if (name === "resolve_agent" || name === "discover_tools")
      console.log(`${name}: ${Date.parse(e.eventTime) - at} ms (scheduled to completed, debug build)`);
  }
}' "$state/history.json"
