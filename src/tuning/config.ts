// The training configuration: one JSON file validated against TRAIN_SCHEMA, overridden by
// command-line flags, printed and saved with every run. Defaults are the reference code's
// (thuml/Diffusion-Tuning train.py): AdamW 1e-4, wd 0, EMA 0.9999, batch 32, tau 1, replay
// int(0.2 * batch), L = L_target + 0.1 * L_replay.
import * as crypto from 'crypto';
import * as fs from 'fs';
import { ConfigError, parseOverride, SectionSpec, setPath, validateSection } from './config-schema';
import { LR_SCHEDULES, LrSchedule } from './lr-schedule';

export const METHODS = ['full', 'diff-tuning', 'retention-only', 'reconsolidation-only', 'pretrain'] as const;
export type Method = (typeof METHODS)[number];

export const TRAIN_SCHEMA = {
  method: {
    type: 'enum', values: METHODS, default: 'diff-tuning',
    help: 'full: uniform t on target data; diff-tuning: psi-sampled target + xi-sampled replay on the bank; ' +
      'retention-only: uniform target + replay; reconsolidation-only: psi-sampled target, no bank; pretrain: from scratch, uniform t',
  },
  model: {
    ckpt: { type: 'string', default: null, nullable: true, help: 'pretrained DiT weights (.safetensors or official .pt); required unless method is pretrain' },
    config: { type: 'string', default: null, nullable: true, help: 'model config JSON (default: X.json beside the weights); for pretrain the architecture' },
    name: { type: 'string', default: null, nullable: true, help: "an official size by name, e.g. 'DiT-S/2' (with inputSize/inChannels from the data): pretrain's architecture, or finetune's for weights without a config (DiT-XL-2-256x256.pt: 'DiT-XL/2')" },
    hiddenSize: { type: 'number', default: null, nullable: true, integer: true, min: 1, help: 'pretrain: override the hidden size' },
    depth: { type: 'number', default: null, nullable: true, integer: true, min: 1, help: 'pretrain: override the depth' },
    numHeads: { type: 'number', default: null, nullable: true, integer: true, min: 1, help: 'pretrain: override the head count' },
    patchSize: { type: 'number', default: null, nullable: true, integer: true, min: 1, help: 'pretrain: override the patch size' },
    learnSigma: { type: 'boolean', default: true, help: 'pretrain: learned variance (DiT default)' },
    classDropoutProb: { type: 'number', default: 0.1, min: 0, max: 0.99, help: 'pretrain: label dropout for classifier-free guidance' },
    gradCheckpointing: { type: 'boolean', default: false, help: 'recompute the DiT blocks in backward instead of keeping their activations (less memory, one more forward of the blocks; same gradients)' },
    vae: { type: 'string', default: null, nullable: true, help: 'latent models: the VAE (diffusers folder or weights file) the latent cache in data.target must have been encoded with (checked by sha256)' },
    skipUnknown: { type: 'boolean', default: false, help: "load a .pt checkpoint's unsupported pickle globals (e.g. argparse.Namespace) as inert placeholders, with a warning, instead of refusing the file" },
  },
  data: {
    target: { type: 'string', default: null, nullable: true, help: 'class-subfolder image folder (torchvision ImageFolder layout), or a latent cache made by `difftune datasets encode` (latent models)' },
    resolution: { type: 'number', default: null, nullable: true, integer: true, min: 1, help: 'image size; default the model input size' },
    split: { type: 'enum', values: ['all', 'train'], default: 'all', help: "train on every image, or on the 'train' part of the seeded split that `difftune eval --ref DIR:eval` holds out" },
    flip: { type: 'boolean', default: true, help: 'random horizontal flips (target and bank, as the reference)' },
    onError: { type: 'enum', values: ['throw', 'skip'], default: 'throw', help: 'an unreadable image: stop naming it, or skip it with a warning' },
    bank: { type: 'string', default: null, nullable: true, help: 'knowledge bank folder made by `difftune bank` (diff-tuning, retention-only)' },
  },
  labels: {
    mode: { type: 'enum', values: ['reuse', 'fresh'], default: 'reuse', help: "target class k uses pretrained label row k ('reuse', as the reference) or a new table ('fresh')" },
  },
  objective: {
    tau: { type: 'number', default: 1, min: 0, help: 'power of the reconsolidation law psi(t) ∝ (t+1)^tau' },
    tauReplay: { type: 'number', default: null, nullable: true, min: 0, help: 'power of the retention law xi(t) ∝ (T-t)^tau_s (default tau)' },
    targetWeights: { type: 'string', default: null, nullable: true, help: 'JSON file of T weights replacing psi (any user law)' },
    replayWeights: { type: 'string', default: null, nullable: true, help: 'JSON file of T weights replacing xi' },
    timestepMode: { type: 'enum', values: ['sample', 'weight'], default: 'sample', help: "'sample' t ∝ law (the code), or uniform t with loss weights T·p(t) (the paper's written form)" },
    replayRatio: { type: 'number', default: 0.2, min: 0, max: 0.95, help: 'replay samples per batch = floor(ratio · batch)' },
    retentionWeight: { type: 'number', default: 0.1, min: 0, help: 'lambda in L = L_target + lambda · L_replay (reference 0.1; the paper writes 1)' },
    lossWeighting: { type: 'enum', values: ['none', 'p2', 'min-snr', 'min-snr-code'], default: 'none', help: 'baseline weighting of the eps-MSE term' },
    p2K: { type: 'number', default: 1, min: 0, help: 'P2: k in 1/(k+SNR)^gamma' },
    p2Gamma: { type: 'number', default: 0.5, min: 0, help: 'P2: gamma' },
    minSnrGamma: { type: 'number', default: 5, min: 0, exclusiveMin: true, help: 'Min-SNR: gamma' },
  },
  peft: {
    method: { type: 'enum', values: ['none', 'difffit', 'bitfit', 'lora', 'adaptformer'], default: 'none', help: 'parameter-efficient fine-tuning (combines with any method)' },
    loraRank: { type: 'number', default: 8, integer: true, min: 1, help: 'LoRA rank' },
    loraAlpha: { type: 'number', default: null, nullable: true, min: 0, help: 'LoRA alpha (default the rank)' },
    adapterDim: { type: 'number', default: 64, integer: true, min: 1, help: 'AdaptFormer bottleneck width' },
    adapterScale: { type: 'number', default: 0.1, min: 0, help: 'AdaptFormer output scale' },
  },
  optim: {
    lr: { type: 'number', default: null, nullable: true, min: 0, exclusiveMin: true, help: 'AdamW learning rate (default 1e-4; 1e-3 for difffit)' },
    weightDecay: { type: 'number', default: 0, min: 0, help: 'AdamW weight decay' },
    betas: { type: 'numbers', length: 2, default: [0.9, 0.999], help: 'AdamW betas' },
    eps: { type: 'number', default: 1e-8, min: 0, exclusiveMin: true, help: 'AdamW eps' },
    batchSize: { type: 'number', default: 32, integer: true, min: 1, help: 'samples per micro-batch (target + replay)' },
    accumulate: { type: 'number', default: 1, integer: true, min: 1, help: 'micro-batches per optimizer step' },
    gradClip: { type: 'number', default: null, nullable: true, min: 0, exclusiveMin: true, help: 'clip the global gradient norm to this (none by default, as the reference)' },
    schedule: { type: 'enum', values: LR_SCHEDULES, default: 'constant', help: "learning-rate schedule: 'constant' (the reference), or 'linear' / 'cosine' decay to 0 at run.steps" },
    warmupSteps: { type: 'number', default: 0, integer: true, min: 0, help: 'optimizer steps of linear warm-up from lr/warmupSteps to lr, before the schedule' },
  },
  eval: {
    every: { type: 'number', default: 0, integer: true, min: 0, help: 'steps between in-loop FID evaluations of the EMA model (0: none)' },
    samples: { type: 'number', default: 1000, integer: true, min: 2, help: 'generated samples per evaluation (FID from fewer than ~1000 is biased; a warning says so)' },
    extractor: { type: 'string', default: 'iconnet', help: "feature network: 'iconnet' (shipped) or 'inception:FILE'" },
    ref: { type: 'string', default: null, nullable: true, help: "reference images 'DIR[:train|eval|all]' (default: data.target's eval split when data.split is 'train', else all of it)" },
    steps: { type: 'number', default: 25, integer: true, min: 1, help: 'DDIM steps of evaluation samples' },
    cfg: { type: 'number', default: 1.5, min: 1, help: 'guidance scale of evaluation samples' },
    batch: { type: 'number', default: 100, integer: true, min: 1, help: 'samples per sampling batch' },
    precision: { type: 'enum', values: ['fp32', 'bf16'], default: 'fp32', help: 'precision of evaluation sampling (fp32 keeps FIDs comparable across machines)' },
  },
  ema: {
    decay: { type: 'number', default: 0.9999, min: 0, max: 1, help: 'EMA decay (initialised from the pretrained weights; samples use the EMA)' },
  },
  run: {
    steps: { type: 'number', default: 24000, integer: true, min: 0, help: 'optimizer steps' },
    seed: { type: 'number', default: 0, integer: true, min: 0, help: 'seed of torch, data order and flips' },
    device: { type: 'string', default: 'cpu', help: "'cpu', 'cuda' or 'cuda:N'" },
    precision: { type: 'enum', values: ['fp32', 'bf16', 'auto'], default: 'fp32', help: "bf16 autocast with fp32 weights (CUDA or CPU); 'auto': bf16 on CUDA, and on a CPU where a start-up matmul measurement finds bf16 >= 1.5x faster" },
    out: { type: 'string', default: 'runs/run', help: 'run folder (config, logs, checkpoints, previews, final weights)' },
    logEvery: { type: 'number', default: 100, integer: true, min: 1, help: 'steps between log records' },
    checkpointEvery: { type: 'number', default: 1000, integer: true, min: 1, help: 'steps between checkpoints (one is also written at the end)' },
    keepCheckpoints: { type: 'number', default: 2, integer: true, min: 1, help: 'most recent checkpoints kept' },
    previewEvery: { type: 'number', default: 1000, integer: true, min: 0, help: 'steps between preview grids (0: none)' },
    previewCount: { type: 'number', default: 8, integer: true, min: 1, help: 'images per preview' },
    previewSteps: { type: 'number', default: 25, integer: true, min: 1, help: 'DDIM steps of previews' },
    previewCfg: { type: 'number', default: 1.5, min: 1, help: 'guidance scale of previews' },
    nanRollback: { type: 'number', default: 5, integer: true, min: 1, help: 'non-finite steps in a row before rolling back to the last checkpoint' },
    progressEvery: { type: 'number', default: 10, min: 0, help: 'without a terminal (CI, nohup, a log file): seconds between plain progress lines (step, rate, ETA, loss)' },
  },
} as const satisfies SectionSpec;

export interface TrainConfig {
  method: Method;
  model: {
    ckpt: string | null; config: string | null; name: string | null;
    hiddenSize: number | null; depth: number | null; numHeads: number | null; patchSize: number | null;
    learnSigma: boolean; classDropoutProb: number; gradCheckpointing: boolean; vae: string | null; skipUnknown: boolean;
  };
  data: { target: string | null; resolution: number | null; split: 'all' | 'train'; flip: boolean; onError: 'throw' | 'skip'; bank: string | null };
  labels: { mode: 'reuse' | 'fresh' };
  objective: {
    tau: number; tauReplay: number | null; targetWeights: string | null; replayWeights: string | null;
    timestepMode: 'sample' | 'weight'; replayRatio: number; retentionWeight: number;
    lossWeighting: 'none' | 'p2' | 'min-snr' | 'min-snr-code'; p2K: number; p2Gamma: number; minSnrGamma: number;
  };
  peft: { method: 'none' | 'difffit' | 'bitfit' | 'lora' | 'adaptformer'; loraRank: number; loraAlpha: number | null; adapterDim: number; adapterScale: number };
  optim: {
    lr: number | null; weightDecay: number; betas: number[]; eps: number; batchSize: number; accumulate: number; gradClip: number | null;
    schedule: LrSchedule; warmupSteps: number;
  };
  eval: { every: number; samples: number; extractor: string; ref: string | null; steps: number; cfg: number; batch: number; precision: 'fp32' | 'bf16' };
  ema: { decay: number };
  run: {
    steps: number; seed: number; device: string; precision: 'fp32' | 'bf16' | 'auto'; out: string; logEvery: number;
    checkpointEvery: number; keepCheckpoints: number; previewEvery: number; previewCount: number; previewSteps: number;
    previewCfg: number; nanRollback: number; progressEvery: number;
  };
}

/** Whether a method trains on the knowledge bank. */
export function usesBank(method: Method): boolean {
  return method === 'diff-tuning' || method === 'retention-only';
}

/** Cross-field rules the per-field schema cannot express (a memory plan needs no bank: replay items cost what target ones do). */
function checkConsistency(c: TrainConfig, where: string, planOnly = false): void {
  if (c.method === 'pretrain') {
    if (c.model.ckpt) throw new ConfigError(where, 'model.ckpt', 'must be null for method "pretrain" (it trains from scratch)');
    if (!c.model.name && !c.model.config) throw new ConfigError(where, 'model.name', "is needed for pretrain (e.g. 'DiT-S/2'), or give model.config");
  } else if (!c.model.ckpt) {
    throw new ConfigError(where, 'model.ckpt', `is required for method "${c.method}" (the pretrained weights to fine-tune)`);
  }
  if (!c.data.target) throw new ConfigError(where, 'data.target', 'is required (a class-subfolder image folder)');
  if (usesBank(c.method)) {
    if (!c.data.bank && !planOnly) throw new ConfigError(where, 'data.bank', `is required for method "${c.method}" (make one with \`difftune bank\`)`);
    if (Math.floor(c.optim.batchSize * c.objective.replayRatio) < 1) {
      throw new ConfigError(where, 'objective.replayRatio', `gives no replay samples: floor(${c.optim.batchSize} · ${c.objective.replayRatio}) = 0; raise it or optim.batchSize`);
    }
  } else if (c.data.bank) {
    throw new ConfigError(where, 'data.bank', `is set but method "${c.method}" does not use a bank (use diff-tuning or retention-only)`);
  }
  if (!/^(cpu|cuda(:\d+)?)$/.test(c.run.device)) throw new ConfigError(where, 'run.device', `must be cpu, cuda or cuda:N, got "${c.run.device}"`);
}

export function validateConfig(value: unknown, where: string, planOnly = false): TrainConfig {
  const c = validateSection(TRAIN_SCHEMA, value, where) as unknown as TrainConfig;
  checkConsistency(c, where, planOnly);
  return c;
}

/**
 * The resolved config: defaults, then the file (if any), then `overrides` as "path=value" pairs
 * (flags), validated together so a message names whichever source set the bad value.
 */
export function resolveConfig(o: { file?: string; values?: Record<string, unknown>; overrides?: [string, string][]; planOnly?: boolean }): TrainConfig {
  let raw: Record<string, unknown> = {};
  if (o.file) {
    let text: string;
    try {
      text = fs.readFileSync(o.file, 'utf8');
    } catch (e) {
      throw new ConfigError(o.file, '', `cannot be read (${(e as Error).message})`);
    }
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(o.file, '', `is not valid JSON (${(e as Error).message})`);
    }
    validateSection(TRAIN_SCHEMA, raw, o.file); // field errors name the file
  }
  raw = structuredClone({ ...raw, ...(o.values ?? {}) });
  for (const [path, text] of o.overrides ?? []) setPath(raw, path, parseOverride(TRAIN_SCHEMA, path, text));
  return validateConfig(raw, o.file ? `${o.file} (with command-line overrides)` : 'config', o.planOnly);
}

/** Fields that may change when a run is resumed (how long and how it reports, not what it learns). */
const RESUMABLE = new Set(['run.steps', 'run.out', 'run.logEvery', 'run.checkpointEvery', 'run.keepCheckpoints', 'run.previewEvery',
  'run.previewCount', 'run.previewSteps', 'run.previewCfg', 'run.nanRollback', 'run.progressEvery', 'run.device', 'data.onError',
  'model.vae', 'model.gradCheckpointing', 'model.skipUnknown', 'eval.every', 'eval.samples', 'eval.extractor', 'eval.ref', 'eval.steps', 'eval.cfg', 'eval.batch', 'eval.precision']);

function flatten(obj: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(obj).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? flatten(v as Record<string, unknown>, path) : [[path, v] as [string, unknown]];
  });
}

/**
 * Fields added after runs already existed: left out of the identity while at these defaults
 * (which is what those runs did), so their checkpoints still resume.
 */
const LATER_FIELDS: Record<string, unknown> = { 'optim.schedule': 'constant', 'optim.warmupSteps': 0 };

/** The fields that define what a run learns, as sorted "path=value" pairs. */
export function identityFields(c: TrainConfig): [string, unknown][] {
  return flatten(c as unknown as Record<string, unknown>)
    .filter(([k, v]) => !RESUMABLE.has(k) && !(k in LATER_FIELDS && LATER_FIELDS[k] === v))
    .sort(([a], [b]) => (a < b ? -1 : 1));
}

/** sha256 of the identity fields: a checkpoint resumes only under the same hash. */
export function configHash(c: TrainConfig): string {
  return crypto.createHash('sha256').update(JSON.stringify(identityFields(c))).digest('hex');
}

/** The identity fields that differ between two configs, as "path: a -> b" lines. */
export function configDiff(a: TrainConfig, b: TrainConfig): string[] {
  const mb = new Map(identityFields(b).map(([k, v]) => [k, JSON.stringify(v)]));
  return identityFields(a).filter(([k, v]) => mb.get(k) !== JSON.stringify(v)).map(([k, v]) => `${k}: ${JSON.stringify(v)} -> ${mb.get(k)}`);
}
