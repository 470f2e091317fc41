#!/usr/bin/env bash
# Builds the addon against the device machine's PyTorch (see ../shared/notes/gpu-build.md) and checks
# that Node sees CUDA. Sourced by the device scripts (cuda-check.sh, gpu-testbed.sh): it unpacks the
# carried Node from .cuda-kit, puts it on PATH and writes $out/build.log and $out/smoke.log.
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
