#!/usr/bin/env bash
# GPTQ and AWQ against the original code, timed in the same run: for each round, qk's bench_methods and the
# reference drivers (../shared/anchors/reference-methods: IST-DASLab/gptq, mit-han-lab/llm-awq, unmodified) run
# one after the other on problem P1 (4096x4096 weight, 4096 tokens, 4-bit asymmetric, groups of 128), at 1 and 2
# threads. The table gives the median over the rounds of each side and their ratio; only ratios from one such run
# may be quoted (docs/benchmarks.md), never a time from another session or machine instance.
#
# `rtn_model` (not in the default list) times whole-model RTN instead: `qtool quantize IN -o OUT --type q4_0
# --quantize-embeddings --threads T` against `llama-quantize IN OUT q4_0 T` on a 1.6 GB F32 synthetic Llama GGUF
# (6 blocks of TinyLlama's shape, made by qk_synthetic_llama unless QK_COMPARE_RTN_MODEL names one); its last
# columns are peak RSS in MB instead of E.
#
#   bash bench/compare-methods.sh [BUILD_DIR] [ROUNDS]       (defaults: build, 3)
#   QK_COMPARE_METHODS="gptq awq" QK_COMPARE_THREADS="1 2" QK_COMPARE_REF_TUNED=1 (the reference reuses freed
#   memory: MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=64 GiB, its faster configuration; 0 runs it as it comes)
#   QK_LLAMACPP_BIN (/tmp/llamacpp-c392e509/build/bin: ../shared/anchors/build-llamacpp.sh builds it)
#
# Needs the reference's Python stack for gptq/awq, which is not a dependency of qk:
#   apt-get install -y python3-torch python3-numpy libopenblas0
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
methods=${QK_COMPARE_METHODS:-gptq awq}
threads=${QK_COMPARE_THREADS:-1 2}
ref_dir=${QK_REFERENCE_METHODS:-../shared/anchors/reference-methods}
bench="$build/bench/bench_methods"
[[ -x "$bench" ]] || { echo "compare-methods: $bench not built (cmake --build $build --target bench_methods)" >&2; exit 1; }
[[ -f "$ref_dir/gptq_ref.py" ]] || { echo "compare-methods: no reference drivers in $ref_dir" >&2; exit 1; }
py=${QK_PYTHON:-/usr/bin/python3}  # Debian's python, where python3-torch installs
if [[ " $methods " == *" gptq "* || " $methods " == *" awq "* ]]; then
  "$py" -c "import torch, numpy" 2>/dev/null ||
    { echo "compare-methods: the reference needs python3-torch and python3-numpy (apt-get install -y python3-torch python3-numpy libopenblas0)" >&2; exit 1; }
fi
llama_bin=${QK_LLAMACPP_BIN:-/tmp/llamacpp-c392e509/build/bin}
ref_env=()
if [[ "${QK_COMPARE_REF_TUNED:-1}" == 1 ]]; then ref_env=(MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736); fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rtn_model=${QK_COMPARE_RTN_MODEL:-}
if [[ " $methods " == *" rtn_model "* ]]; then
  [[ -x "$llama_bin/llama-quantize" ]] || { echo "compare-methods: no $llama_bin/llama-quantize (QK_LLAMACPP_BIN)" >&2; exit 1; }
  if [[ -z "$rtn_model" ]]; then
    rtn_model="$out/tinyllama6.gguf"
    "$build/bench/qk_synthetic_llama" "$rtn_model" --dim 2048 --ffn 5632 --blocks 6 --heads 32 --kv-heads 4 \
      --vocab 32000 >/dev/null
  fi
  cat "$rtn_model" > /dev/null  # both sides start from a warm page cache
fi
timed() {  # command... -> "wall_s peak_MB" (GNU time)
  /usr/bin/time -f "%e %M" -o "$out/time" "$@" >/dev/null 2>&1
  awk '{printf "%s %.0f\n", $1, $2 / 1024}' "$out/time"
}

qk_run() {  # method threads -> seconds (wall) and E on stdout as "S E"
  local filter
  if [[ $1 == rtn_model ]]; then
    timed "$build/tools/qtool/qtool" quantize "$rtn_model" -o "$out/qk.gguf" --type q4_0 --quantize-embeddings \
      --threads "$2" -q --force
    rm -f "$out/qk.gguf"
    return
  fi
  case $1 in gptq) filter="^BM_GptqEndToEnd/$2/" ;; awq) filter="^BM_Awq/$2/" ;; esac
  "$bench" --benchmark_filter="$filter" --benchmark_format=json 2>/dev/null | python3 -c '
import json, sys
b = json.load(sys.stdin)["benchmarks"][0]
scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
print(b["real_time"] * scale, b.get("E_calib", float("nan")))'
}
ref_run() {  # method threads -> "S E"
  if [[ $1 == rtn_model ]]; then
    timed "$llama_bin/llama-quantize" "$rtn_model" "$out/ref.gguf" q4_0 "$2"
    rm -f "$out/ref.gguf"
    return
  fi
  env "${ref_env[@]}" OMP_NUM_THREADS="$2" OPENBLAS_NUM_THREADS="$2" "$py" "$ref_dir/${1}_ref.py" "$2" 2>/dev/null |
    python3 -c '
import json, sys
r = [json.loads(l[7:]) for l in sys.stdin if l.startswith("RESULT ") and "partial" not in l][-1]
print(r["total_s"], r["E_calib"])'
}

echo "compare-methods: $methods; $(nproc) cores, $(uptime | sed "s/.*load average/load average/"), $rounds rounds, $(date -u +%FT%TZ)"
for r in $(seq 1 "$rounds"); do
  for m in $methods; do
    for t in $threads; do
      qk_run "$m" "$t" >> "$out/qk-$m-$t"
      ref_run "$m" "$t" >> "$out/ref-$m-$t"
      echo "  round $r: $m t=$t qk $(tail -n1 "$out/qk-$m-$t") | reference $(tail -n1 "$out/ref-$m-$t")" >&2
    done
  done
done

python3 - "$out" "$methods" "$threads" <<'EOF'
import statistics, sys
out, methods, threads = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(p):
    rows = [tuple(map(float, l.split())) for l in open(p) if l.strip()]
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows), len(rows)
print("| method | threads | qk (median s) | reference (median s) | speed-up | E (peak MB for rtn_model) qk | reference |")
print("|---|---|---|---|---|---|---|")
best = {}
for m in methods:
    for t in threads:
        q, qe, n = load(f"{out}/qk-{m}-{t}")
        r, re_, _ = load(f"{out}/ref-{m}-{t}")
        best[m] = min(best.get(m, r), r)
        print(f"| {m} | {t} | {q:.2f} | {r:.2f} | {r / q:.2f}x | {qe:.5g} | {re_:.5g} |")
for m in methods:
    for t in threads:
        q, _, _ = load(f"{out}/qk-{m}-{t}")
        print(f"{m} t={t}: {best[m] / q:.1f}x the reference's best thread count ({best[m]:.2f} s)")
EOF
