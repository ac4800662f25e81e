# shellcheck shell=bash
# Sourced by scripts/demo and scripts/test: makes the project's environment
# exist and match what the repository asks for, on a fresh machine or an old one.
#   ensure_python_env  -> .venv with `pip install -e .[dev]` (through uv when it can be
#                         had), redone when pyproject.toml changes
#   ensure_node_tools  -> scripts/node/node_modules (dynalite), redone when its lock changes
#   compile_sources    -> the project's .pyc files, written ahead (see below)
#   ensure_infra_tools -> .venv-infra with cfn-lint and aws-sam-translator (pinned in
#                         infra/requirements-tools.txt), redone when that file changes; its own
#                         environment because aws-sam-translator pins pydantic ~=2.13
# Each step is skipped when its stamp matches, so a second run costs well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

_say() { printf '[setup] %s\n' "$*" >&2; }

_hash() { sha256sum "$@" | sha256sum | cut -c1-16; }

_find_python() {
  local cand
  for cand in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  return 1
}

ensure_python_env() {
  local want stamp="$VENV/.ratebridge-stamp" base
  want="$(_hash "$ROOT/pyproject.toml")"
  if [ -x "$PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$PY" ]; then
    base="$(_find_python)" || { _say "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 2; }
    _say "creating .venv with $base"
    "$base" -m venv "$VENV"
  fi
  _say "installing ratebridge and its dev tools into .venv (first run takes about a minute)"
  local log="$VENV/setup.log"
  : >"$log"
  if ! _install "$PY" "$log" -e "$ROOT[dev]"; then
    tail -n 30 "$log" >&2
    _say "installing failed; the whole log is in $log"
    exit 1
  fi
  echo "$want" > "$stamp"
}

# _install PYTHON LOG ARGS...: `pip install ARGS` into PYTHON's environment, through
# uv (parallel downloads and builds: several times faster on a fresh machine) when
# it can be had, else through pip itself.
_install() {
  local py="$1" log="$2"
  shift 2
  if [ ! -x "$VENV/bin/uv" ]; then
    "$PY" -m pip install --disable-pip-version-check --quiet uv >>"$log" 2>&1 || true
  fi
  if [ -x "$VENV/bin/uv" ]; then
    # --compile-bytecode: as pip does. Without it the first processes to import the
    # Genesys SDK (thousands of modules) all compile it at once, each for itself.
    "$VENV/bin/uv" pip install --compile-bytecode --python "$py" "$@" >>"$log" 2>&1 && return 0
    echo "uv failed; trying pip" >>"$log"
  fi
  "$py" -m pip install --disable-pip-version-check "$@" >>"$log" 2>&1
}

ensure_node_tools() {
  local dir="$ROOT/scripts/node" want stamp
  stamp="$dir/node_modules/.ratebridge-stamp"
  command -v npm >/dev/null 2>&1 || { _say "Node.js 18+ with npm is required for dynalite (apt-get install nodejs npm)"; exit 2; }
  want="$(_hash "$dir/package.json" "$dir/package-lock.json")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  _say "installing dynalite into scripts/node/node_modules"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$stamp"
}

# The project's own bytecode, written ahead: where PYTHONDONTWRITEBYTECODE is set
# (it is on some CI machines), every worker process would otherwise compile
# processor/, limiter/ and the tools again. Up-to-date files are skipped; a .pyc
# older than its source is never used.
compile_sources() {
  "$PY" -m compileall -q -j 0 "$ROOT/processor" "$ROOT/limiter" "$ROOT/scripts/ratebridge_tools" \
    "$ROOT/tests" >/dev/null || true
}

INFRA_VENV="$ROOT/.venv-infra"

ensure_infra_tools() {
  local want stamp="$INFRA_VENV/.ratebridge-stamp" base log
  want="$(_hash "$ROOT/infra/requirements-tools.txt")"
  if [ -x "$INFRA_VENV/bin/cfn-lint" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$INFRA_VENV/bin/python" ]; then
    base="$(_find_python)" || { _say "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 2; }
    _say "creating .venv-infra (cfn-lint, aws-sam-translator) with $base"
    "$base" -m venv "$INFRA_VENV"
  fi
  # Keep git (and ruff, which reads .gitignore files) out of the tool environment.
  echo '*' > "$INFRA_VENV/.gitignore"
  _say "installing the infra checkers into .venv-infra"
  log="$INFRA_VENV/setup.log"
  : >"$log"
  if ! _install "$INFRA_VENV/bin/python" "$log" -r "$ROOT/infra/requirements-tools.txt"; then
    tail -n 30 "$log" >&2
    _say "installing failed; the whole log is in $log"
    exit 1
  fi
  echo "$want" > "$stamp"
}
