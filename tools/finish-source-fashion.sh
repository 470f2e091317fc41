#!/usr/bin/env bash
# Turns a checkpoint of tools/train-source-fashion.sh into the testbed's source model: exports its EMA weights
# (float16) to assets/source/fashion-dit.safetensors (+ .json), runs the quality gate with the bank's sampler
# (DDPM 250, CFG 1.5, 20 per class), measures its own-domain FID (1,000 samples, DDIM 25, CFG 1.5, against the
# 10,000 Fashion-MNIST test images, fashion features) and writes the card the benchmark reads (fashion-dit.card.json)
# and a sample grid. Usage: tools/finish-source-fashion.sh runs/source-fashion/checkpoints/step-N.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:?usage: tools/finish-source-fashion.sh CHECKPOINT}
dir=assets/source
out=$dir/fashion-dit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d data/fashion-mnist-test ] || npx difftune datasets build fashion-mnist --split test
npx difftune export --checkpoint "$ckpt" --weights ema --dtype float16 --out "$out.safetensors"
npx difftune gate --ckpt "$out.safetensors" --data data/fashion-mnist --classifier assets/extractor/fashion-classifier.safetensors \
  --per-class 20 --precision bf16 --out "$dir/fashion-dit.gate.json" --grid "$dir/fashion-dit-gate.png"
npx difftune sample --ckpt "$out.safetensors" --n 1000 --cfg 1.5 --sampler ddim --steps 25 --seed 1 --batch 250 --precision bf16 \
  --out "$work/samples.safetensors"
npx difftune eval --samples "$work/samples.safetensors" --ref data/fashion-mnist-test:all --extractor fashion --out "$dir/fashion-dit.fid.json"
npx difftune sample --ckpt "$out.safetensors" --classes 0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9 --nrow 10 \
  --cfg 1.5 --sampler ddpm --steps 250 --seed 2 --scale 2 --out "$dir/fashion-dit-samples.png"
node -e '
const fs = require("fs");
const [gateFile, fidFile, cardFile, ckpt, weights] = process.argv.slice(1);
const gate = JSON.parse(fs.readFileSync(gateFile, "utf8"));
const fid = JSON.parse(fs.readFileSync(fidFile, "utf8"));
const sha = require("crypto").createHash("sha256").update(fs.readFileSync(weights)).digest("hex");
const card = {
  weights, sha256: sha, checkpoint: ckpt,
  own_fid: fid.fid_fashion, own_fid_samples: fid.n, own_fid_reference: "data/fashion-mnist-test (10,000 test images)",
  gate: { accuracy: gate.accuracy, real_accuracy: gate.realAccuracy, share: gate.share, min_share: gate.minShare, passed: gate.passed,
    samples: gate.samples, sampler: `${gate.sampler}${gate.steps}`, cfg: gate.cfg },
};
fs.writeFileSync(cardFile, JSON.stringify(card, null, 2) + "\n");
console.log(JSON.stringify(card, null, 2));
' "$dir/fashion-dit.gate.json" "$dir/fashion-dit.fid.json" "$out.card.json" "$ckpt" "$out.safetensors"
