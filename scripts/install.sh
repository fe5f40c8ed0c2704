#!/usr/bin/env bash
# Installs tern under a prefix, so that it runs as plain `tern` from anywhere:
#   PREFIX/bin/tern                      the release binary
#   PREFIX/lib/tern/libonnxruntime.so*   ONNX Runtime from the pinned wheel, found beside the binary
# Usage: scripts/install.sh [PREFIX]   (default: $HOME/.local; /usr/local needs root)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${1:-${PREFIX:-$HOME/.local}}"
cd "$ROOT"
scripts/install-onnxruntime.sh
swift build -c release --product tern
mkdir -p "$PREFIX/bin" "$PREFIX/lib/tern"
install -m 0755 .build/release/tern "$PREFIX/bin/tern"
cp -P .tern/onnxruntime/lib/libonnxruntime.so* "$PREFIX/lib/tern/"
echo "installed $PREFIX/bin/tern (ONNX Runtime in $PREFIX/lib/tern)" >&2
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "add $PREFIX/bin to PATH to run it as tern: export PATH=\"$PREFIX/bin:\$PATH\"" >&2 ;;
esac
