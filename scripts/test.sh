#!/usr/bin/env bash
# The README's second command: install what is missing, build everything, run the whole test suite,
# then install qk into a staging prefix and build examples/consumer against it with find_package(qk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/check-layers.sh
build=${QK_BUILD_DIR:-build}
QK_BUILD_DIR=$build bash scripts/build.sh
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" ${QK_CTEST_ARGS:-}

# Packaging: install, then build and run the consumer project against the installed tree.
prefix="$PWD/$build/install"
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S examples/consumer -B "$build/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$build/consumer" -j"$(nproc)" >/dev/null
"$build/consumer/qk_consumer"

# examples/quantize_model against the installed package: the pipeline API writes the same bytes as qtool.
cmake -S examples/quantize_model -B "$build/quantize_model" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$build/quantize_model" -j"$(nproc)" >/dev/null
model=$(ls examples/models/stories260K*.gguf | head -n 1)
"$build/quantize_model/quantize_model" "$model" "$build/quantize_model/example-q4_k.gguf" >/dev/null 2>&1
"$build/tools/qtool/qtool" quantize "$model" --type q4_k --method gptq -q --force \
  -o "$build/quantize_model/qtool-q4_k.gguf"
cmp "$build/quantize_model/example-q4_k.gguf" "$build/quantize_model/qtool-q4_k.gguf"
echo "examples/quantize_model (installed package) and qtool quantize wrote the same bytes"
