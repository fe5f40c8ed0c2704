#!/usr/bin/env bash
# Builds Tern's image with podman where no image registry is reachable (this project's CI): the root file
# system is laid out here from a built binary, the libraries `ldd` lists for it and for ONNX Runtime, and a
# non-root user; `Containerfile.local` copies it FROM scratch. The image runs as the Dockerfile's does
# (same user, volumes, ports, entrypoint, health check). Usage:
#   deploy/container/build-local.sh [BINARY] [TAG]     (defaults: .build/release/tern, localhost/tern:local)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BINARY="$(realpath "${1:-$ROOT/.build/release/tern}")"
TAG="${2:-localhost/tern:local}"
ORT="$(realpath "$ROOT/.tern/onnxruntime/lib/libonnxruntime.so")"
CONTEXT="$(mktemp -d)"
trap 'rm -rf "$CONTEXT"' EXIT
FS="$CONTEXT/rootfs"
mkdir -p "$FS/usr/local/bin" "$FS/usr/local/lib/tern" "$FS/etc" "$FS/models" "$FS/tmp" "$CONTEXT/data"
# /data, the one folder Tern writes (registry, prediction log), belongs to the tern user.
touch "$CONTEXT/data/.keep"
cp "$BINARY" "$FS/usr/local/bin/tern"
# Symbols and debug information are most of a release binary (183 MB -> 47 MB): not in the image.
command -v strip >/dev/null && strip --strip-unneeded "$FS/usr/local/bin/tern"
cp "$ORT" "$FS/usr/local/lib/tern/libonnxruntime.so"
# Every library the binary and ONNX Runtime load, at the path the loader looks for it.
for file in "$BINARY" "$ORT"; do
  ldd "$file" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
  mkdir -p "$FS$(dirname "$lib")"
  cp -L "$lib" "$FS$lib"
done
# dlopen'd at run time by glibc (name lookups) and by Foundation.
for extra in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
  [ -e "$extra" ] && mkdir -p "$FS$(dirname "$extra")" && cp -L "$extra" "$FS$extra"
done
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ntern:x:10001:10001:tern:/data:/usr/sbin/nologin\n' > "$FS/etc/passwd"
printf 'root:x:0:\ntern:x:10001:\n' > "$FS/etc/group"
printf 'hosts: files dns\n' > "$FS/etc/nsswitch.conf"
chmod 1777 "$FS/tmp"
cp "$ROOT/deploy/container/Containerfile.local" "$CONTEXT/Containerfile"
podman build --format docker --tag "$TAG" "$CONTEXT" >&2
echo "$TAG"
