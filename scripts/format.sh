#!/usr/bin/env bash
# swift-format over every Swift file we write (generated code and the embedded OpenAPI document aside), with
# the project's .swift-format. `scripts/format.sh` rewrites the files; `scripts/format.sh --lint` only checks
# them and fails on any difference (the test command runs it first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard 'Sources/*.swift' 'Tests/*.swift' 'Fuzz/*.swift' 'Package.swift' | grep -v '/Generated/' | grep -v 'OpenAPIDocument.swift')
if [ "${1:-}" = "--lint" ]; then
  swift format lint --strict --configuration .swift-format "${files[@]}"
else
  swift format --in-place --configuration .swift-format "${files[@]}"
fi
