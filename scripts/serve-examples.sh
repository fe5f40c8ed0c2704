#!/usr/bin/env bash
# The README's first command: installs ONNX Runtime (project-local), builds tern, and serves the example
# models on port 8000. Extra arguments go to `tern serve` (for example --http-port 9000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-onnxruntime.sh
swift build -c release --product tern
exec .build/release/tern serve --models examples/models --http-port 8000 "$@"
