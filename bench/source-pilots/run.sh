#!/usr/bin/env bash
# Source-model pilots for the testbed (issue: a source that passes the quality gate in ~2 CPU hours).
# Each pilot trains bf16 for about the same wall time (~8 min on 2 cores: steps sized by measured
# images/s), then `difftune gate` measures the class accuracy of its samples (DDIM 25, CFG 1.5,
# 10 per class) against the held-out iconnet images. Results: bench/source-pilots/<name>/gate.json.
#   bench/source-pilots/run.sh [A|B|C ...]   (needs data/iconnet: npx difftune datasets build iconnet)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/source-pilots
runs=${RUNS:-/tmp/difftune-pilots}
common=(--data data/iconnet --set data.split=train --batch 64 --lr 3e-4 --grad-clip 1 --ema 0.999 --precision bf16
  --log-every 50 --checkpoint-every 100000 --preview-every 0 --seed 0)
pilot() {
  local name=$1; shift
  mkdir -p "$out/$name"
  local t0=$SECONDS
  npx difftune "$@" "${common[@]}" --out "$runs/$name" > "$out/$name/train.txt" 2>&1
  echo "train_seconds $((SECONDS - t0))" >> "$out/$name/train.txt"
  cp "$runs/$name/log.jsonl" "$out/$name/log.jsonl"
  npx difftune gate --ckpt "$runs/$name/model.safetensors" --data data/iconnet --sampler ddim --steps 25 --cfg 1.5 \
    --per-class 10 --precision bf16 --out "$out/$name/gate.json" --grid "$out/$name/samples.png" | tail -3
}
for p in "${@:-A B C}"; do
  case $p in
    # A: the shipped source (32x32, patch 4, 192 wide, 6 deep) trained on from its weights.
    A) pilot A finetune --method full --ckpt assets/source/iconnet-dit.safetensors --steps 1100 ;;
    # B: 16x16 icons, patch 2 (64 tokens, the cost of A), from scratch.
    B) pilot B pretrain --model DiT-S/2 --set model.hiddenSize=192 --set model.depth=6 --set model.numHeads=6 \
         --set data.resolution=16 --steps 1100 ;;
    # C: 32x32, patch 2 (256 tokens, ~4x the cost per image), from scratch.
    C) pilot C pretrain --model DiT-S/2 --set model.hiddenSize=192 --set model.depth=6 --set model.numHeads=6 --steps 280 ;;
    *) echo "unknown pilot $p"; exit 2 ;;
  esac
done
