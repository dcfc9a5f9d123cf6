#!/usr/bin/env bash
# The quickstart demo, from a fresh machine: dependencies, a release build, then a small MoE
# model (SwiGLU experts + a shared expert) trained from scratch, and the preset table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install_deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target custom_moe presets
build/default/examples/custom_moe
build/default/examples/presets
