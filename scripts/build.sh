#!/usr/bin/env bash
# Configures and builds qk into ${QK_BUILD_DIR:-build}. Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${QK_BUILD_DIR:-build}
args=(-DCMAKE_BUILD_TYPE=${QK_BUILD_TYPE:-Release})
if [[ -d ../shared/data ]]; then
  args+=(-DQK_REFERENCE_DATA="$(cd ../shared/data && pwd)")
fi
cmake -S . -B "$build" "${args[@]}" "$@"
cmake --build "$build" -j"$(nproc)"
