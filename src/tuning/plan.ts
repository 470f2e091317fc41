// A memory plan before a run starts: weights, gradients, AdamW moments, EMA and activations,
// so a run that cannot fit says so up front instead of failing after the bank and data load.
// Activations are an analytical estimate of what autograd saves per DiT block (counted below);
// weights, gradients, optimizer and EMA are exact.
import * as os from 'os';
import { DiT } from '../models/dit';
import { TrainConfig } from './config';

export interface MemoryPlan {
  weights: number;
  gradients: number;
  optimizer: number;
  ema: number;
  activations: number;
  total: number;
  /** Bytes available on the device when known (CPU: physical memory), else null. */
  capacity: number | null;
  fits: boolean | null;
  device: string;
}

/**
 * Floats autograd keeps per token per block: the two modulated norms (2h), qkv (3h), attention
 * output before and after proj (2h), the two gated residual branches (2h), the MLP input, hidden
 * pre- and post-GELU (h + 2·ratio·h) and the block output (h); attention probabilities add
 * heads·N per token when attention is not fused.
 */
export function activationFloatsPerSample(model: DiT, fusedAttention: boolean): number {
  const c = model.config;
  const tokens = (c.inputSize / c.patchSize) ** 2;
  const h = c.hiddenSize;
  const perToken = 2 * h + 3 * h + 2 * h + 2 * h + h + 2 * c.mlpRatio * h + h;
  const attention = fusedAttention ? 0 : 2 * c.numHeads * tokens;
  // The patch embedding, final layer and the diffusion loss work on the image: a few image-sized tensors.
  const image = 8 * c.inChannels * c.inputSize * c.inputSize;
  return c.depth * tokens * (perToken + attention) + image;
}

export function estimateMemory(model: DiT, c: TrainConfig, capacity?: number | null): MemoryPlan {
  let all = 0;
  let trainable = 0;
  for (const p of model.parameters()) {
    all += p.numel;
    if (p.requiresGrad) trainable += p.numel;
  }
  const cuda = c.run.device.startsWith('cuda');
  const actBytes = c.run.precision === 'bf16' ? 2 : 4;
  const plan = {
    weights: all * 4,
    gradients: trainable * 4,
    optimizer: trainable * 8,
    ema: trainable * 4,
    // Fused attention (flash / memory-efficient SDPA) keeps no N x N matrix: libtorch 2.x on CUDA.
    activations: activationFloatsPerSample(model, cuda) * actBytes * c.optim.batchSize,
  };
  const total = plan.weights + plan.gradients + plan.optimizer + plan.ema + plan.activations;
  const cap = capacity !== undefined ? capacity : cuda ? null : os.totalmem();
  return { ...plan, total, capacity: cap, fits: cap === null ? null : total < 0.9 * cap, device: c.run.device };
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function formatPlan(p: MemoryPlan): string {
  const rows = [
    ['weights', p.weights], ['gradients', p.gradients], ['AdamW moments', p.optimizer], ['EMA', p.ema],
    ['activations (estimate)', p.activations], ['total', p.total],
  ] as const;
  const lines = rows.map(([k, v]) => `  ${k.padEnd(24)}${gib(v).padStart(12)}`);
  let verdict: string;
  if (p.fits === null) verdict = `  (${p.device} capacity unknown: compare with the device's memory; lower optim.batchSize and raise optim.accumulate if it is short)`;
  else if (p.fits) verdict = `  fits in ${gib(p.capacity!)} on ${p.device}`;
  else verdict = `  WARNING: needs ${gib(p.total)} but ${p.device} has ${gib(p.capacity!)}: lower optim.batchSize and raise optim.accumulate, or use PEFT`;
  return `memory plan:\n${lines.join('\n')}\n${verdict}`;
}
