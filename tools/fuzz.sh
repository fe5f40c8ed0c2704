#!/usr/bin/env bash
# Builds a libFuzzer target with AddressSanitizer and runs it for SECONDS on the committed seed corpus.
#   tools/fuzz.sh TARGET SECONDS [libFuzzer flags...]
# Targets: FuzzV2JSON FuzzV2Binary FuzzGRPCRequest FuzzTabular FuzzBundle FuzzParsers (Fuzz/<target>/main.swift).
# The corpus grows in .build-fuzz/corpus/TARGET (seeded from Fuzz/Corpus/TARGET); a crash, leak or hang is
# written to .build-fuzz/crashes/TARGET/ and the script exits non-zero. Replay one with
#   .build-fuzz/debug/TARGET .build-fuzz/crashes/TARGET/crash-...
# Fuzz with -jobs=N to use more cores. The build (all of Tern's dependencies, instrumented) takes a while
# the first time; it is kept in .build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS="FuzzV2JSON FuzzV2Binary FuzzGRPCRequest FuzzTabular FuzzBundle FuzzParsers"
if [ $# -lt 2 ] || ! [[ " $TARGETS " == *" $1 "* ]] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: tools/fuzz.sh TARGET SECONDS [libFuzzer flags...]; targets: $TARGETS" >&2
    exit 2
fi
target=$1 seconds=$2
shift 2
# SwiftPM's --sanitize flags make the target a libFuzzer binary (its main is libFuzzer's), but swiftc
# keeps only the last -sanitize= it is given: alone they build without coverage instrumentation and
# libFuzzer fuzzes blind. The last flag, naming both, restores it.
TERN_FUZZ=1 swift build --build-path .build-fuzz --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address \
    --product "$target"
corpus=.build-fuzz/corpus/$target crashes=.build-fuzz/crashes/$target
mkdir -p "$corpus" "$crashes"
cp -n Fuzz/Corpus/"$target"/* "$corpus"/ 2>/dev/null || true
# Swift's runtime keeps metadata caches for the life of the process; LeakSanitizer reports what a run
# allocated and lost, which these targets must not.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
# Known leaks of dependencies (Fuzz/lsan.supp says which and why); any other leak fails the run.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=1}
exec .build-fuzz/debug/"$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=131072 -artifact_prefix="$crashes/" -print_final_stats=1 "$@"
