#!/usr/bin/env bash
# CI's sanitizer pass, run after the main test command:
#  1. the whole test suite built with gcc and -DQK_SANITIZE=ON (ASan + UBSan) in build-asan, run once with ctest
#     (labels "slow" and "isa" — long runs and forced-ISA duplicates of the unit tests — are left out to keep the
#     pass near 10 minutes on 2 cores; QK_ASAN_CTEST_ARGS overrides the selection);
#  2. the libFuzzer targets (fuzz/) built with clang in build-fuzz, each run for QK_FUZZ_SECONDS (default 20) on a
#     scratch copy of its seed corpus fuzz/corpus/<format>.
# Installs clang and its runtime only when missing (QK_WITH_FUZZ=1 scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
QK_WITH_FUZZ=1 bash scripts/install-deps.sh
jobs=$(nproc)
ref=()
if [[ -d ../shared/data ]]; then ref=(-DQK_REFERENCE_DATA="$(cd ../shared/data && pwd)"); fi

echo "ci-sanitize: ASan + UBSan test suite (build-asan)"
# -O1: the usual sanitizer optimisation level; it compiles much faster than -O3 and keeps the tests quick.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DQK_SANITIZE=ON \
  -DQK_BUILD_BENCHMARKS=OFF \
  -DQK_BUILD_EXAMPLES=OFF -DQK_INSTALL=OFF "${ref[@]}" >/dev/null
cmake --build build-asan -j"$jobs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# shellcheck disable=SC2086
ctest --test-dir build-asan --output-on-failure -j"$jobs" ${QK_ASAN_CTEST_ARGS:--LE "slow|isa"}

echo "ci-sanitize: libFuzzer targets (build-fuzz, clang)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQK_BUILD_FUZZERS=ON \
  -DQK_BUILD_TESTS=OFF -DQK_BUILD_BENCHMARKS=OFF -DQK_BUILD_TOOLS=OFF -DQK_BUILD_EXAMPLES=OFF -DQK_INSTALL=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_npy fuzz_safetensors fuzz_gguf fuzz_llama2c
seconds=${QK_FUZZ_SECONDS:-20}
for f in npy safetensors gguf llama2c; do
  work=build-fuzz/corpus-$f
  rm -rf "$work" && mkdir -p "$work"
  echo "ci-sanitize: fuzz_$f for ${seconds}s"
  # New inputs go to the scratch folder (first), the committed seeds (second) are only read.
  build-fuzz/fuzz/fuzz_$f -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix=build-fuzz/crash-$f- -print_final_stats=1 "$work" fuzz/corpus/$f 2>&1 | tail -n 12
done
echo "ci-sanitize: done"
