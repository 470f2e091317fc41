// The models of `npm run bench:scale`: DiT-B/2 and DiT-XL/2 on 32x32x4 latents (256x256 images),
// batch 32, ImageNet's 1000 classes; `small` is a toy latent DiT that runs the same plumbing on a CPU.
// They are registered into bench/engine's table under these keys, so both sides run bench:engine's
// exact step (ts_step.ts and dit_step.py).
import type { BenchConfig } from '../engine/configs';
import { DIT_MODELS } from '../../src/models/dit';

const latent256 = { inputSize: 32, inChannels: 4, numClasses: 1000 };

export const SCALE_MODELS: Record<string, { key: string; config: BenchConfig }> = {
  'DiT-B/2': { key: 'scale-dit-b2', config: { model: { ...latent256, ...DIT_MODELS['DiT-B/2'] }, batch: 32, cudaOnly: true } },
  'DiT-XL/2': { key: 'scale-dit-xl2', config: { model: { ...latent256, ...DIT_MODELS['DiT-XL/2'] }, batch: 32, cudaOnly: true } },
  small: { key: 'scale-small', config: { model: { inputSize: 8, inChannels: 4, patchSize: 2, hiddenSize: 64, depth: 2, numHeads: 4, numClasses: 10 }, batch: 4 } },
};

/**
 * Multiply-adds of one DiT forward per sample: patch embedding, the timestep and label MLPs, per
 * block qkv, attention scores and values, proj, MLP and adaLN, and the final layer. DiT-XL/2 at
 * 256px gives 118.6 G, the paper's "Gflops".
 */
export function ditForwardMacs(m: BenchConfig['model'], mlpRatio = 4, frequencyDim = 256): number {
  const h = m.hiddenSize;
  const tokens = (m.inputSize / m.patchSize) ** 2;
  const hidden = Math.trunc(h * mlpRatio);
  const patchIn = m.patchSize * m.patchSize * m.inChannels;
  const embed = tokens * patchIn * h + frequencyDim * h + h * h;
  const block = tokens * (h * 3 * h + h * h + 2 * h * hidden) + 2 * tokens * tokens * h + h * 6 * h;
  const final = tokens * h * m.patchSize * m.patchSize * 2 * m.inChannels + h * 2 * h;
  return embed + m.depth * block + final;
}

/** FLOPs of one training step (forward + backward ≈ 3 forwards, 2 FLOPs per multiply-add). */
export function ditStepFlops(c: BenchConfig): number {
  return 6 * ditForwardMacs(c.model) * c.batch;
}
