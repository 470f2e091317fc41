// A memory plan before a run starts: weights, gradients, AdamW moments, EMA and activations,
// so a run that cannot fit says so up front instead of failing after the bank and data load.
// Activations are an analytical estimate of what autograd saves per DiT block (counted below);
// weights, gradients, optimizer and EMA are exact. planMemory works from a config alone, so the
// plan for DiT-XL/2 needs no 2.7 GB of weights.
import * as os from 'os';
import { DiT, DiTConfig, gammaDepth } from '../models/dit';
import { TrainConfig } from './config';

export interface MemoryPlan {
  weights: number;
  gradients: number;
  optimizer: number;
  ema: number;
  /** bf16 autocast's cached low-precision copies of the weights (0 in fp32). */
  castWeights: number;
  activations: number;
  total: number;
  /** Bytes available on the device when known (CPU: physical memory), else null. */
  capacity: number | null;
  fits: boolean | null;
  device: string;
  /** Whether activations were counted as with gradient checkpointing of the DiT blocks. */
  checkpointing: boolean;
}

/**
 * Parameters of a DiT from its config alone (no weights allocated: DiT-XL/2 would take 2.7 GB),
 * counted as PyTorch's sum(p.numel() for p in model.parameters()), pos_embed included.
 */
export function ditParameterCount(c: DiTConfig): { total: number; posEmbed: number } {
  const h = c.hiddenSize;
  const p = c.patchSize;
  const tokens = (c.inputSize / p) ** 2;
  const m = Math.trunc(h * c.mlpRatio);
  const outChannels = c.learnSigma ? 2 * c.inChannels : c.inChannels;
  const linear = (i: number, o: number): number => i * o + o;
  const embed = linear(p * p * c.inChannels, h) + linear(256, h) + linear(h, h) + (c.numClasses + (c.classDropoutProb > 0 ? 1 : 0)) * h;
  const block = linear(h, 3 * h) + linear(h, h) + linear(h, m) + linear(m, h) + linear(h, 6 * h);
  // DiffFit: gamma1/gamma2 on the block (2h) and on qkv / proj outputs (3h + h).
  const gammas = c.useGamma ? gammaDepth(c) * 6 * h : 0;
  const final = linear(h, p * p * outChannels) + linear(h, 2 * h);
  const posEmbed = tokens * h;
  return { total: embed + posEmbed + c.depth * block + gammas + final, posEmbed };
}

/**
 * Floats autograd keeps per token per block: the two modulated norms (2h), qkv (3h), attention
 * output before and after proj (2h), the two gated residual branches (2h), the MLP input, hidden
 * pre- and post-GELU (h + 2·ratio·h) and the block output (h); attention probabilities add
 * heads·N per token when attention is not fused. With gradient checkpointing (DiT.gradCheckpointing)
 * only each block's input (h per token) is kept, plus, while a block is recomputed in backward,
 * that block's full set and the gradients of its output and input (2h).
 */
export function activationFloatsPerSample(model: DiT | DiTConfig, fusedAttention: boolean, checkpointing = false): number {
  const c = model instanceof DiT ? model.config : model;
  const tokens = (c.inputSize / c.patchSize) ** 2;
  const h = c.hiddenSize;
  const perToken = 2 * h + 3 * h + 2 * h + 2 * h + h + 2 * c.mlpRatio * h + h;
  const attention = fusedAttention ? 0 : 2 * c.numHeads * tokens;
  // The patch embedding, final layer and the diffusion loss work on the image: a few image-sized tensors.
  const image = 8 * c.inChannels * c.inputSize * c.inputSize;
  const oneBlock = tokens * (perToken + attention);
  return (checkpointing ? c.depth * tokens * h + oneBlock + 2 * tokens * h : c.depth * oneBlock) + image;
}

export interface PlanOptions {
  batchSize: number;
  precision: 'fp32' | 'bf16';
  device: string;
  /** Trainable parameters (default: all but pos_embed, i.e. full fine-tuning). */
  trainable?: number;
  /** Fused attention keeps no N x N matrix (libtorch 2.x on CUDA); default: on CUDA. */
  fusedAttention?: boolean;
  checkpointing?: boolean;
  /** Device memory in bytes; default: physical memory on the CPU, unknown (null) on CUDA. */
  capacity?: number | null;
}

/** The memory plan of training a DiT of this config: exact for the weight-sized parts, estimated for activations. */
export function planMemory(config: DiTConfig, o: PlanOptions): MemoryPlan {
  const { total: all, posEmbed } = ditParameterCount(config);
  const trainable = o.trainable ?? all - posEmbed;
  const cuda = o.device.startsWith('cuda');
  const bf16 = o.precision === 'bf16';
  const checkpointing = o.checkpointing ?? false;
  const plan = {
    weights: all * 4,
    gradients: trainable * 4,
    optimizer: trainable * 8,
    ema: trainable * 4,
    castWeights: bf16 ? all * 2 : 0,
    activations: activationFloatsPerSample(config, o.fusedAttention ?? cuda, checkpointing) * (bf16 ? 2 : 4) * o.batchSize,
  };
  const total = plan.weights + plan.gradients + plan.optimizer + plan.ema + plan.castWeights + plan.activations;
  const cap = o.capacity !== undefined ? o.capacity : cuda ? null : os.totalmem();
  return { ...plan, total, capacity: cap, fits: cap === null ? null : total < 0.9 * cap, device: o.device, checkpointing };
}

export function estimateMemory(model: DiT, c: TrainConfig, capacity?: number | null): MemoryPlan {
  let all = 0;
  let trainable = 0;
  for (const p of model.parameters()) {
    all += p.numel;
    if (p.requiresGrad) trainable += p.numel;
  }
  const plan = planMemory(model.config, {
    // 'auto' may stay float32: plan for that, the larger of the two.
    batchSize: c.optim.batchSize, precision: c.run.precision === 'bf16' ? 'bf16' : 'fp32', device: c.run.device, trainable, capacity,
    checkpointing: c.model.gradCheckpointing,
  });
  // PEFT adapters add parameters the config does not count: take the model's own numbers.
  const weights = all * 4;
  const castWeights = plan.castWeights ? all * 2 : 0;
  const total = plan.total - plan.weights - plan.castWeights + weights + castWeights;
  return { ...plan, weights, castWeights, total, fits: plan.capacity === null ? null : total < 0.9 * plan.capacity };
}

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function formatPlan(p: MemoryPlan): string {
  const rows = [
    ['weights', p.weights], ['gradients', p.gradients], ['AdamW moments', p.optimizer], ['EMA', p.ema],
    ...(p.castWeights ? [['bf16 weight copies', p.castWeights] as const] : []),
    [p.checkpointing ? 'activations (ckpt, est.)' : 'activations (estimate)', p.activations], ['total', p.total],
  ] as const;
  const lines = rows.map(([k, v]) => `  ${k.padEnd(24)}${gib(v).padStart(12)}`);
  let verdict: string;
  if (p.fits === null) verdict = `  (${p.device} capacity unknown: compare with the device's memory; lower optim.batchSize and raise optim.accumulate if it is short)`;
  else if (p.fits) verdict = `  fits in ${gib(p.capacity!)} on ${p.device}`;
  else verdict = `  WARNING: needs ${gib(p.total)} but ${p.device} has ${gib(p.capacity!)}: lower optim.batchSize and raise optim.accumulate, or use PEFT`;
  return `memory plan:\n${lines.join('\n')}\n${verdict}`;
}
