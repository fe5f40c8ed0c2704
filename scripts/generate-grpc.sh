#!/usr/bin/env bash
# Regenerates Sources/TernGRPC/Generated from Protos/open_inference.proto. Run only when the .proto changes;
# the generated files are committed, so building Tern never needs protoc or the plugins.
#
# Needs protoc (apt-get install protobuf-compiler). Builds the two protoc plugins once, from the versions of
# swift-protobuf and grpc-swift-protobuf this package resolves, into .build-plugins/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
swift package resolve
PLUGINS="$PWD/.build-plugins"
build_plugin() {  # checkout product
  if [ ! -x "$PLUGINS/$1/release/$2" ]; then
    swift build -c release --package-path ".build/checkouts/$1" --scratch-path "$PLUGINS/$1" --product "$2"
  fi
}
build_plugin swift-protobuf protoc-gen-swift
build_plugin grpc-swift-protobuf protoc-gen-grpc-swift-2
OUT=Sources/TernGRPC/Generated
rm -f "$OUT"/*.swift
protoc Protos/open_inference.proto --proto_path=Protos \
  --plugin=protoc-gen-swift="$PLUGINS/swift-protobuf/release/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift="$PLUGINS/grpc-swift-protobuf/release/protoc-gen-grpc-swift-2" \
  --swift_opt=Visibility=Internal --swift_out="$OUT" \
  --grpc-swift_opt=Visibility=Internal,Client=true,Server=true --grpc-swift_out="$OUT"
ls -l "$OUT"
