#!/usr/bin/env bash
# The testbed's next source model (in progress): the shipped iconnet DiT (32x32, patch 4, 192 wide, 6 deep,
# 4,000 steps) trained on for up to 20,000 more steps on the iconnet train split, bf16 autocast on the CPU.
# Resumable: run it again and it continues from runs/source-v2's newest checkpoint. Gate it with
#   npx difftune export --checkpoint runs/source-v2/checkpoints/step-N.safetensors --out /tmp/v2.safetensors
#   npx difftune gate --ckpt /tmp/v2.safetensors --data data/iconnet --per-class 10 --out gate.json
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d data/iconnet ] || npx difftune datasets build iconnet
resume=()
[ -d runs/source-v2/checkpoints ] && resume=(--resume)
exec npx difftune finetune --method full --ckpt assets/source/iconnet-dit.safetensors --data data/iconnet --set data.split=train \
  --steps 20000 --batch 64 --lr 3e-4 --grad-clip 1 --ema 0.999 --precision bf16 --seed 0 \
  --log-every 100 --checkpoint-every 500 --preview-every 1000 --out runs/source-v2 "${resume[@]}"
