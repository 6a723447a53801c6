#!/usr/bin/env bash
# Fails when an #include runs up a floor of docs/design.md: a file may include only its own floor and the floors
# above it (listed first). Checks include/qk and src (the library) and tools/ (qtool, the last floor); also refuses
# relative includes that reach into another folder ("../x/y.hpp"), and checks that qk/qk.hpp includes every public
# header. Run by CI (scripts/test.sh); prints each offending line and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

floors=(core util calib linalg methods io formats kernels model runtime pipeline qtool)
declare -A rank
for i in "${!floors[@]}"; do rank[${floors[$i]}]=$i; done
rank[detail]=0  # include/qk/detail: internals of the core's headers

floor_of() {  # path -> floor name (empty when not layered)
  case "$1" in
    include/qk/*/*) local f=${1#include/qk/}; echo "${f%%/*}" ;;
    src/*/*) local f=${1#src/}; echo "${f%%/*}" ;;
    tools/*) echo qtool ;;
    *) echo "" ;;
  esac
}

bad=0
while IFS= read -r file; do
  own=$(floor_of "$file")
  [[ -n "$own" && -n "${rank[$own]:-}" ]] || continue
  while IFS= read -r line; do
    num=${line%%:*}
    inc=$(sed -E 's/^[0-9]+:#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' <<<"$line")
    if [[ "$inc" == ../* || "$inc" == */../* ]]; then
      echo "$file:$num: relative include \"$inc\" reaches into another folder"; bad=1; continue
    fi
    case "$inc" in
      qk/qk.hpp) target=umbrella ;;
      qk/*/*) target=${inc#qk/}; target=${target%%/*} ;;
      */*) target=${inc%%/*} ;;      # src-private headers by their path below src/ ("util/json.hpp")
      *) continue ;;                  # a header of the file's own folder
    esac
    if [[ "$target" == umbrella ]]; then
      echo "$file:$num: the library must not include the umbrella header qk/qk.hpp"; bad=1; continue
    fi
    [[ -n "${rank[$target]:-}" ]] || continue
    if (( rank[$target] > rank[$own] )); then
      echo "$file:$num: $own includes $inc ($target is a lower floor: the arrow runs up)"; bad=1
    fi
  done < <(grep -nE '^#[[:space:]]*include[[:space:]]*"' "$file" || true)
done < <(git ls-files 'include/qk/*' 'src/*' 'tools/*' | grep -E '\.(hpp|cpp|inc|h)$')

# qk/qk.hpp: every public header (include/qk/detail excepted) once.
while IFS= read -r h; do
  rel=${h#include/}
  [[ "$rel" == qk/qk.hpp || "$rel" == qk/detail/* ]] && continue
  grep -qF "#include \"$rel\"" include/qk/qk.hpp || { echo "include/qk/qk.hpp: missing #include \"$rel\""; bad=1; }
done < <(git ls-files 'include/qk/*.hpp')

if (( bad )); then
  echo "check-layers: includes break the floors of docs/design.md" >&2
  exit 1
fi
echo "check-layers: every include points down the floors (${floors[*]})"
