// A tiny transfer problem for trainer tests: a small pixel-space DiT saved as the "pretrained"
// model, a two-class target image folder of 8x8 PNGs, and a knowledge bank sampled from the model.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mulberry32 } from '../../src/data/prng';
import { DiT } from '../../src/models/dit';
import { saveDiT } from '../../src/models/dit-io';
import { encodePng } from '../../src/report/png';
import * as torch from '../../src/torch';
import { buildBank } from '../../src/tuning/bank';
import { resolveConfig, TrainConfig } from '../../src/tuning/config';

export const SIZE = 8;

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `difftune-${prefix}-`));
}

/** Class 0: a light square on dark; class 1: a dark cross on light; colours jitter per image. */
export function writeTargetFolder(root: string, perClass = 16, seed = 1): void {
  const rand = mulberry32(seed);
  for (const [k, name] of ['square', 'cross'].entries()) {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const px = new Uint8Array(SIZE * SIZE * 3);
      const fg = [0, 1, 2].map(() => 150 + Math.floor(rand() * 100));
      const bg = [0, 1, 2].map(() => Math.floor(rand() * 60));
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          const inside = k === 0 ? x >= 2 && x < 6 && y >= 2 && y < 6 : x === y || x === SIZE - 1 - y;
          const c = (k === 0) === inside ? fg : bg;
          px.set(c, (y * SIZE + x) * 3);
        }
      }
      fs.writeFileSync(path.join(dir, `${String(i).padStart(3, '0')}.png`), encodePng(px, SIZE, SIZE, 3));
    }
  }
}

export function writePretrained(file: string, seed = 0): DiT {
  torch.manualSeed(seed);
  const model = new DiT({ inputSize: SIZE, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 2, numHeads: 2, numClasses: 4, classDropoutProb: 0.1 });
  // DiT's adaLN-Zero init leaves the gates and the output layer at zero, where no bias-only method
  // (DiffFit, BitFit) gets a gradient; a trained model has them non-zero.
  torch.noGrad(() => {
    for (const [, p] of model.namedParameters()) {
      if (p.requiresGrad && torch.scope(() => p.abs().max().item()) === 0) p.copy_(torch.scope(() => torch.randn(p.shape).mul(0.05)));
    }
  });
  saveDiT(file, model);
  return model;
}

export interface TrainFixture {
  dir: string;
  ckpt: string;
  target: string;
  bank: string;
}

let cached: TrainFixture | null = null;

/** The shared fixture (built once per test process). */
export async function trainFixture(): Promise<TrainFixture> {
  if (cached) return cached;
  const dir = tempDir('train');
  const ckpt = path.join(dir, 'pretrained.safetensors');
  writePretrained(ckpt);
  const target = path.join(dir, 'target');
  writeTargetFolder(target);
  const bank = path.join(dir, 'bank');
  await buildBank({
    modelFile: ckpt, out: bank,
    settings: { n: 16, labels: 'uniform', cfg: 1, guideChannels: 'all', sampler: 'ddim', steps: 5, eta: 0, seed: 0, batchSize: 8, clip: true },
  });
  cached = { dir, ckpt, target, bank };
  return cached;
}

/** A small, fast config on the fixture; `values` override sections. */
export function fixtureConfig(f: TrainFixture, out: string, values: Record<string, unknown> = {}, overrides: [string, string][] = []): TrainConfig {
  const base: Record<string, unknown> = {
    method: 'diff-tuning',
    model: { ckpt: f.ckpt },
    data: { target: f.target, bank: f.bank },
    optim: { lr: 2e-3, batchSize: 10 },
    ema: { decay: 0.9 },
    run: { steps: 12, out, logEvery: 4, checkpointEvery: 6, previewEvery: 0 },
  };
  for (const [k, v] of Object.entries(values)) {
    base[k] = typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...(base[k] as object ?? {}), ...(v as object) } : v;
  }
  return resolveConfig({ values: base, overrides });
}
