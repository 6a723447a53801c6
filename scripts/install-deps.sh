#!/usr/bin/env bash
# Installs the Debian packages qk needs, and only those that are missing.
# Idempotent; run as root (or with sudo available) on Debian 12.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libeigen3-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libdnnl-dev ocl-icd-opencl-dev
)
# ocl-icd-opencl-dev is only a recommendation of libdnnl-dev, but Debian's oneDNN CMake package (built with the
# OpenCL GPU runtime) requires OpenCL's headers and loader in find_package(dnnl).
# clang + its runtime give the libFuzzer targets and sanitizer builds; optional for users.
if [[ "${QK_WITH_FUZZ:-0}" == "1" ]]; then
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
