#!/usr/bin/env bash
# The README's first command: install what is missing, build, then quantize the bundled example model
# (stories260K) to Q4_K with qtool and print what it cost in quality.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
QK_BUILD_DIR=${QK_BUILD_DIR:-build} bash scripts/build.sh -DQK_BUILD_TESTS=OFF -DQK_BUILD_BENCHMARKS=OFF
build=${QK_BUILD_DIR:-build}
qtool="$build/tools/qtool/qtool"
mkdir -p "$build/demo"
model=examples/models/stories260K-f32.gguf
out="$build/demo/stories260K-q4_k.gguf"
"$qtool" inspect "$model"
"$qtool" quantize "$model" --type q4_k --method rtn -o "$out" --force
# Per-tensor weight error, then what it costs the model: perplexity, KL divergence and top-1 agreement on the
# bundled evaluation tokens, scored as llama.cpp's perplexity tool does (the float model scores 4.90).
"$qtool" eval "$model" "$out" --tokens examples/models/stories260K.eval-tokens.i32
# The same size with GPTQ, calibrated on sequences the model itself samples (not the evaluation tokens): lower
# perplexity and KL than llama.cpp's quantizer (the RTN file above, byte for byte).
gptq="$build/demo/stories260K-q4_k-gptq.gguf"
"$qtool" quantize "$model" --type q4_k --method gptq --calib-generate --act-order -o "$gptq" --force
"$qtool" eval "$model" "$gptq" --tokens examples/models/stories260K.eval-tokens.i32
