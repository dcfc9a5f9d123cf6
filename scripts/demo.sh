#!/usr/bin/env bash
# The quickstart, from a fresh machine: dependencies, the corpus (story, speech, code), a
# release build of the minimoe tool, then the default MoE model trained for a bounded time,
# with a sample of its text at the end and the paths of its plots.
#
#   scripts/demo.sh            # MINUTES=12 by default; the run lands in runs/demo
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=${MINUTES:-12}
scripts/install_deps.sh
scripts/fetch_data.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target minimoe_cli
# --force: running the demo again starts a fresh run instead of refusing to touch the old one.
build/default/cli/minimoe train --preset tiny --data data/corpus --time "$minutes" \
  --out runs/demo --force --prompt "The ship"
