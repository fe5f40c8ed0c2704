#!/usr/bin/env bash
# The README's first command: installs ONNX Runtime (project-local), builds tern, and serves the example
# models on port 8000. Extra arguments go to `tern serve` (for example --http-port 9000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-onnxruntime.sh
binary=.build/release/tern
# SwiftPM's null build still takes tens of seconds (it re-plans the whole package): skip it when the binary
# is newer than every source, manifest and resolved dependency it was built from.
if [ ! -x "$binary" ] || [ -n "$(find Sources Package.swift Package.resolved -newer "$binary" -print -quit 2>/dev/null)" ]; then
    swift build -c release --product tern
fi
exec "$binary" serve --models examples/models --http-port 8000 "$@"
