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
kit=.cuda-kit
out=${OUT:-/tmp/difftune-cuda}
mkdir -p "$out" "$kit/bin"
[ -x "$kit/bin/node" ] || { xz -dc "$kit/node.xz" > "$kit/bin/node"; chmod +x "$kit/bin/node"; }
export PATH="$PWD/$kit/bin:$PATH" NODE_INCLUDE="$PWD/$kit" LIBTORCH_USE_PYTORCH=1
python3 -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
node native/build.js 2>&1 | tee "$out/build.log"
node -e '
const torch = require("./dist/src/torch");
const info = torch.buildInfo();
if (!info.cudaBuild || !torch.cuda.isAvailable()) throw new Error("CUDA not usable from Node: " + JSON.stringify(info));
const a = torch.randn([4096, 4096], { device: "cuda" });
const b = a.matmul(a); torch.cuda.synchronize();
const t0 = Date.now(); for (let i = 0; i < 20; i++) a.matmul(a).dispose(); torch.cuda.synchronize();
console.log("fp32 matmul TFLOP/s", (20 * 2 * 4096 ** 3 / ((Date.now() - t0) / 1000) / 1e12).toFixed(1));
const c = torch.autocast(() => a.matmul(a));
console.log("autocast bf16 dtype", c.dtype, "memory", JSON.stringify(torch.cuda.memoryStats(0)));
' 2>&1 | tee "$out/smoke.log"
node dist/bench/engine/run.js --device cuda --config dit-s2,dit-b2 --min-seconds 5 2>&1 | tee "$out/bench-engine-dit.log"
node dist/bench/engine/run.js --device cuda --config tiny,small --precision fp32,bf16 --min-seconds 5 2>&1 | tee "$out/bench-engine-small.log"
node dist/bench/sampling/run.js --device cuda 2>&1 | tee "$out/bench-sampling.log"
