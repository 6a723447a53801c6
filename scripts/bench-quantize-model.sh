#!/usr/bin/env bash
# Scale check of `qtool quantize` (model mode): generates a ~4 GiB float32 safetensors model in a temporary
# directory (random values written in chunks, never held in memory), quantizes it with RTN to q8_0, q4_0 and q4_k
# under /usr/bin/time -v, and prints peak resident memory and throughput. Everything generated is deleted at exit.
#
# usage: scripts/bench-quantize-model.sh [path/to/qtool]      (default: build/tools/qtool/qtool)
# env:   QK_BENCH_GIB   model size in GiB (default 4; the layout scales with it)
#        QK_BENCH_TYPES types to run (default "q8_0 q4_0 q4_k")
#        TMPDIR         where the model is generated (needs ~2x the model size free)
# The bar (issue 6): peak RSS < 1 GiB + the largest tensor (512 MiB at 4 GiB).
set -euo pipefail

QTOOL=${1:-build/tools/qtool/qtool}
GIB=${QK_BENCH_GIB:-4}
TYPES=${QK_BENCH_TYPES:-"q8_0 q4_0 q4_k"}
[ -x "$QTOOL" ] || { echo "qtool not found at '$QTOOL' (build it first, or pass its path)" >&2; exit 2; }
if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time for /usr/bin/time -v" >&2
  apt-get install -y time >/dev/null
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/qk-bench-model.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# Layout at 4 GiB: embed_tokens and lm_head [32768, 4096] (512 MiB each, the largest tensors), 6 layers of up_proj
# [16384, 4096] and down_proj [4096, 16384] (256 MiB each) with a 1-D norm per layer; QK_BENCH_GIB scales the
# vocabulary and the number of layers.
python3 - "$dir/model.safetensors" "$GIB" <<'PY'
import json, os, struct, sys
path, gib = sys.argv[1], float(sys.argv[2])
scale = gib / 4.0
vocab = max(256, int(32768 * scale) // 256 * 256)
layers = max(1, round(6 * scale))
tensors = [("model.embed_tokens.weight", [vocab, 4096])]
for i in range(layers):
    tensors.append((f"model.layers.{i}.post_attention_layernorm.weight", [4096]))
    tensors.append((f"model.layers.{i}.mlp.up_proj.weight", [16384, 4096]))
    tensors.append((f"model.layers.{i}.mlp.down_proj.weight", [4096, 16384]))
tensors.append(("model.norm.weight", [4096]))
tensors.append(("lm_head.weight", [vocab, 4096]))
header, off = {"__metadata__": {"format": "pt"}}, 0
for name, shape in tensors:
    n = 4
    for d in shape: n *= d
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
# random float32: random sign and mantissa, exponent 0x78/0x79 -> |x| in [2^-7, 2^-5)
exp_byte = bytes(((b & 0x80) | 0x3C) for b in range(256))
chunk = 64 << 20
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    left = off
    while left:
        n = min(chunk, left)
        buf = bytearray(os.urandom(n))
        buf[3::4] = bytes(buf[3::4]).translate(exp_byte)
        f.write(buf)
        left -= n
print(f"generated {path}: {off / 2**30:.2f} GiB in {len(tensors)} tensors, largest "
      f"{max(4 * (s[0] * (s[1] if len(s) > 1 else 1)) for _, s in tensors) / 2**20:.0f} MiB", file=sys.stderr)
PY

model="$dir/model.safetensors"
size=$(stat -c %s "$model")
cat "$model" > /dev/null  # warm the page cache: measure qtool, not the disk
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "qtool:   $QTOOL ($("$QTOOL" --version 2>/dev/null || echo '?')), threads ${QK_NUM_THREADS:-default}"
printf '%-6s %10s %10s %9s %8s %9s %12s\n' type in_MiB out_MiB wall_s MB/s cpu_s peak_RSS_MiB
for t in $TYPES; do
  out="$dir/out-$t.gguf"
  /usr/bin/time -v "$QTOOL" quantize "$model" -o "$out" --type "$t" --method rtn --quiet --force \
    2> "$dir/time.txt" || { cat "$dir/time.txt" >&2; exit 1; }
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
  secs=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$dir/time.txt")
  osize=$(stat -c %s "$out")
  awk -v t="$t" -v i="$size" -v o="$osize" -v s="$secs" -v c="$cpu" -v r="$rss_kb" 'BEGIN {
    printf "%-6s %10.0f %10.0f %9.2f %8.1f %9.2f %12.0f\n", t, i / 1048576, o / 1048576, s, i / 1e6 / s, c, r / 1024 }'
  rm -f "$out"
done
