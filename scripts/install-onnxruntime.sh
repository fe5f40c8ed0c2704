#!/usr/bin/env bash
# Installs ONNX Runtime's shared library from the pinned PyPI wheel into .tern/onnxruntime/ (project-local).
# Tern opens it at run time with dlopen; nothing is installed system-wide. Safe to run again: it does
# nothing when the pinned version is already there.
set -euo pipefail
VERSION="${TERN_ONNXRUNTIME_VERSION:-1.31.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.tern/onnxruntime"
PYTHON="${PYTHON:-python3}"

if [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$VERSION" ] && [ -e "$DEST/lib/libonnxruntime.so" ]; then
  exit 0
fi
echo "Installing ONNX Runtime $VERSION into $DEST" >&2
WHEELS="$ROOT/.tern/wheels"
mkdir -p "$WHEELS" "$DEST/lib"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  "onnxruntime==$VERSION" -d "$WHEELS" >&2
WHEEL="$(ls "$WHEELS"/onnxruntime-"$VERSION"-*.whl | head -n 1)"
"$PYTHON" - "$WHEEL" "$DEST/lib" "$VERSION" <<'PY'
import os, sys, zipfile
wheel, dest, version = sys.argv[1:4]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as archive:
    target = os.path.join(dest, os.path.basename(name))
    with archive.open(name) as source, open(target + ".tmp", "wb") as out:
        out.write(source.read())
    os.replace(target + ".tmp", target)
for link in ("libonnxruntime.so", "libonnxruntime.so.1"):
    path = os.path.join(dest, link)
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(os.path.basename(name), path)
PY
echo "$VERSION" > "$DEST/VERSION"
