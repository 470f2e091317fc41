#!/usr/bin/env bash
# One-shot check on the lent CUDA machine (PyTorch 2.x + CUDA, g++, no Node, no network).
# Prepare here:   npx tsc -p . && mkdir -p .cuda-kit && xz -T2 -6 -c "$(command -v node)" > .cuda-kit/node.xz \
#                   && cp /usr/include/node/{node_api.h,js_native_api.h,js_native_api_types.h,node_api_types.h} .cuda-kit/
# Run there with the device tool, carrying dist, node_modules/node-addon-api and .cuda-kit (under 64 MiB):
#   bash tools/cuda-check.sh
# It builds the addon against the torch Python package, checks CUDA from Node, then runs the CUDA
# benches in slices that fit one call. Output under $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/cuda-build.sh
node dist/bench/engine/run.js --device cuda --config dit-s2,dit-b2 --min-seconds 5 2>&1 | tee "$out/bench-engine-dit.log"
node dist/bench/engine/run.js --device cuda --config tiny,small --precision fp32,bf16 --min-seconds 5 2>&1 | tee "$out/bench-engine-small.log"
node dist/bench/sampling/run.js --device cuda 2>&1 | tee "$out/bench-sampling.log"
