#!/usr/bin/env bash
# The README's first command: install what is missing, build qtool, then quantize the two bundled models
# (stories260K and BabyLlama, examples/models) with RTN, RTN + importance matrix, GPTQ and AWQ at q8_0, q5_0 and
# q4_0, calibrated on the bundled training text, and score every file against the float model on the bundled
# validation text as llama.cpp's perplexity tool scores it (context 256, second half of each chunk). One table,
# then a greedy story from each float model and from its best 4-bit file.
#
# Environment: QK_DEMO_CHUNKS (64) chunks of 256 tokens scored per file (0 = the whole validation text, as
# docs/benchmarks.md; about 3x longer); QK_DEMO_QTOOL=path uses an already built qtool (no install, no build);
# QK_BUILD_DIR (build).
# No K-quant appears: neither model has rows that are a multiple of 256, so q4_k would fall back to q5_0 on
# every tensor (docs/cli.md, Fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${QK_BUILD_DIR:-build}
if [[ -n "${QK_DEMO_QTOOL:-}" ]]; then
  qtool=$QK_DEMO_QTOOL
else
  bash scripts/install-deps.sh
  QK_BUILD_DIR=$build bash scripts/build.sh -DQK_BUILD_TESTS=OFF -DQK_BUILD_BENCHMARKS=OFF
  qtool="$build/tools/qtool/qtool"
fi
chunks=${QK_DEMO_CHUNKS:-64}
out="$build/demo"
mkdir -p "$out"
valid=examples/text/tinystories-valid.joined.txt
train=examples/text/tinystories-train.slice.joined.txt
calib=(--calib-text "$train" --calib-samples 64 --calib-ctx 128)

# The number after "key": in qtool's one-line JSON.
num() { sed -n "s/.*\"$1\":\([-+0-9.eE]*\).*/\1/p" <<<"$2" | head -n 1; }

rows=()
declare -A best_file best_kld
for model in stories260K babyllama; do
  src=examples/models/$model.gguf
  float_ppl=""
  mrows=()
  for type in q8_0 q5_0 q4_0; do
    for method in rtn rtn+imatrix gptq awq; do
      dst="$out/$model-$type-${method/+/-}.gguf"
      case $method in
        rtn) args=(--method rtn) ;;
        rtn+imatrix) args=(--method rtn "${calib[@]}") ;;
        *) args=(--method "$method" "${calib[@]}") ;;
      esac
      q=$("$qtool" quantize "$src" -o "$dst" --type "$type" "${args[@]}" --force --json)
      e=$("$qtool" eval "$src" "$dst" --text "$valid" --ctx 256 --chunks "$chunks" --json)
      bytes=$(num output_bytes "$q")
      kld=$(num kld "$e")
      float_ppl=$(num ppl_a "$e")
      mrows+=("$(printf '%-12s %-12s %-5s %9s %6.2f %8.4f %9.5f %6.2f%% %7.2f' "$model" "$method" "$type" "$bytes" \
        "$(num quantized_bits_per_weight "$q")" "$(num ppl_b "$e")" "$kld" \
        "$(awk -v t="$(num top1_agreement "$e")" 'BEGIN { print 100 * t }')" "$(num seconds "$q")")")
      if [[ $type == q4_0 ]] && { [[ -z "${best_kld[$model]:-}" ]] ||
        awk -v a="$kld" -v b="${best_kld[$model]}" 'BEGIN { exit !(a < b) }'; }; then
        best_kld[$model]=$kld
        best_file[$model]=$dst
      fi
    done
  done
  rows+=("$(printf '%-12s %-12s %-5s %9s %6s %8.4f %9s %7s %7s' "$model" "float" "f32" "$(stat -c %s "$src")" "32" \
    "$float_ppl" "-" "-" "-")" "${mrows[@]}")
done

echo
echo "Validation text: $valid, context 256, $([[ $chunks == 0 ]] && echo "all chunks" || echo "first $chunks chunks");"
echo "calibration: 64 sequences of 128 tokens from $train. bits/w counts the quantized tensors only;"
echo "KL is KL(float || quantized) per scored token (nats); top-1 is how often both pick the same next token."
echo
printf '%-12s %-12s %-5s %9s %6s %8s %9s %7s %7s\n' model method type bytes bits/w PPL KL top-1 seconds
for r in "${rows[@]}"; do echo "$r"; done

prompt="Once upon a time"
for model in stories260K babyllama; do
  echo
  echo "== $model, float (greedy, 64 tokens):"
  "$qtool" generate "examples/models/$model.gguf" -p "$prompt" -n 64 --temp 0
  echo "== $model, ${best_file[$model]##*/} (the 4-bit file with the lowest KL):"
  "$qtool" generate "${best_file[$model]}" -p "$prompt" -n 64 --temp 0
done
