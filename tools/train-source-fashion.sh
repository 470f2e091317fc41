#!/usr/bin/env bash
# The testbed's source model: a class-conditional DiT (Fashion-MNIST 28x28 grey, read as 32x32 RGB; patch 4, 192 wide, 6 deep, 4.2M parameters)
# trained from scratch on the 60,000 Fashion-MNIST training images with bf16 autocast on the CPU, about two hours of
# the 2-core machine (~170 images/s). The iconnet source could not pass the gate in that budget (see
# bench/source-pilots/README.md). Resumable: run it again and it continues from the newest checkpoint.
# Gate a checkpoint with
#   npx difftune export --checkpoint runs/source-fashion/checkpoints/step-N.safetensors --out /tmp/s.safetensors
#   npx difftune gate --ckpt /tmp/s.safetensors --data data/fashion-mnist --classifier assets/extractor/fashion-classifier.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d data/fashion-mnist ] || npx difftune datasets build fashion-mnist
resume=()
[ -d runs/source-fashion/checkpoints ] && resume=(--resume)
exec npx difftune pretrain --model-config tools/fashion-dit.json --data data/fashion-mnist \
  --steps "${STEPS:-16000}" --batch 64 --lr 3e-4 --grad-clip 1 --ema 0.999 --precision bf16 --seed 0 \
  --log-every 100 --checkpoint-every 1000 --preview-every 2000 --set run.keepCheckpoints=16 --out runs/source-fashion "${resume[@]}"
