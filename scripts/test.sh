#!/usr/bin/env bash
# The README's second command: installs what the tests need (ONNX Runtime into .tern/, the Python test
# clients into .venv/, PostgreSQL, Prometheus and Chromium from Debian's packages if missing), builds, and runs every test: the Swift suites, then the Python client suites that
# drive a live `tern serve` with tritonclient and kserve's client.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
# The tests' own onnxruntime (Python) stays quiet too: no usage telemetry, no device id in ~/.cache (docs/security.md).
export ORT_DISABLE_TELEMETRY="${ORT_DISABLE_TELEMETRY:-1}"

scripts/install-onnxruntime.sh

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! cmp -s tests/requirements.txt .venv/.requirements 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt .venv/.requirements
fi

# The registry tests run on SQLite and on a real PostgreSQL server: a private one unless one is named.
if [ -z "${TERN_TEST_POSTGRES_URL:-}" ]; then
  TERN_TEST_POSTGRES_URL="$(scripts/start-postgres.sh)"
fi
export TERN_TEST_POSTGRES_URL

# Prometheus (and promtool), headless Chromium, podman and nginx from Debian's packages: the observability
# tests scrape a live server with Prometheus; the drift report is opened in Chromium; the image is built and
# run with podman; replicas are balanced by nginx.
missing=()
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
# podman (with buildah and runc) builds and runs the container image; nginx balances the scale-out test.
command -v podman >/dev/null || missing+=(podman buildah runc)
command -v nginx >/dev/null || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The code follows .swift-format (scripts/format.sh rewrites it): checked before anything is built.
scripts/format.sh --lint
swift build --build-tests
swift test --skip-build
TERN_BINARY="$PWD/.build/debug/tern" .venv/bin/python -m pytest -q tests
