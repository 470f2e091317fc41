// What EWC needs around the math of ewc.ts: the pretrained model in the fine-tuned model's
// architecture, and its Fisher on a knowledge bank. Shared by `difftune ewc` and bench:transfer.
import { sha256File } from '../data/hash';
import { createDiffusion } from '../diffusion/create';
import { DiT, DiTConfig } from '../models/dit';
import { loadDiT, readDiTConfig, siblingConfig } from '../models/dit-io';
import { Device, Tensor } from '../torch';
import { bankLabels } from '../tuning/bank';
import { openBank } from '../tuning/setup';
import { diagonalFisher, DiagonalFisher } from './ewc';

/** Config fields a fine-tuned model shares with its pretrained one (the label table may be new: compared by shape). */
const SAME_ARCHITECTURE = ['inputSize', 'patchSize', 'inChannels', 'hiddenSize', 'depth', 'numHeads', 'mlpRatio', 'learnSigma'] as const;

/** The pretrained model's config (from `configFile`, else the JSON beside the weights). */
export function pretrainedConfig(file: string, configFile?: string | null): DiTConfig {
  const c = configFile || siblingConfig(file);
  if (!c) throw new Error(`${file}: no config JSON beside it; pass the pretrained model's config`);
  return readDiTConfig(c);
}

/** Throws, naming the field, when `finetuned` is not `base`'s architecture (DiffFit gammas aside). */
export function checkSameArchitecture(base: DiTConfig, finetuned: DiTConfig, what: string): void {
  for (const k of SAME_ARCHITECTURE) {
    if (finetuned[k] !== base[k]) throw new Error(`${what}: ${k} ${finetuned[k]}, but the pretrained model has ${base[k]}; EWC compares weights of one architecture`);
  }
}

/**
 * The pretrained weights in the fine-tuned architecture, so that DiffFit's gammas (absent from the
 * pretrained file) enter at their identity value 1 and get a Fisher too.
 */
export function pretrainedAs(file: string, base: DiTConfig, finetuned: DiTConfig, o: { device?: Device; key?: string; skipUnknown?: boolean } = {}): DiT {
  const config = { ...base, useGamma: finetuned.useGamma, gammaDepth: finetuned.gammaDepth };
  const { model, report } = loadDiT(file, { config, device: o.device, key: o.key, partial: true, skipUnknown: o.skipUnknown });
  const bad = [...report.missing.filter((k) => !/\.gamma[12]$/.test(k)), ...report.unexpected, ...report.mismatched.map((m) => m.key)];
  if (bad.length) {
    model.dispose();
    throw new Error(`${file} does not match the fine-tuned architecture (${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', ...' : ''})`);
  }
  return model;
}

export interface BankFisherOptions {
  /** The bank's first `items` items (fewer if it is smaller). */
  items: number;
  draws: number;
  seed: number;
  /** 'null': the unconditional branch (as Diff-Tuning replays the bank); 'bank': the labels it was sampled with. */
  labels: 'null' | 'bank';
  /** The weights file the bank must have been sampled from (checked by sha256). */
  modelFile: string;
  device?: Device;
  onProgress?: (done: number, total: number) => void;
}

/** The diagonal Fisher of `model` (the pretrained one) on its knowledge bank. */
export async function fisherOnBank(model: DiT, bankDir: string, o: BankFisherOptions): Promise<DiagonalFisher & { items: number }> {
  const c = model.config;
  if (o.labels === 'null' && !(c.classDropoutProb > 0)) {
    throw new Error('EWC with null labels: the pretrained model has no null label row (class_dropout_prob 0); use the bank\'s labels');
  }
  const bank = await openBank(bankDir, { resolution: c.inputSize, modelSha256: sha256File(o.modelFile) });
  const diffusion = createDiffusion({ timestepRespacing: '', learnSigma: c.learnSigma });
  let x: Tensor | null = null;
  try {
    const items = Math.min(o.items, bank.source.length);
    const labels = o.labels === 'null' ? new Array<number>(items).fill(c.numClasses) : bankLabels(bank.manifest.settings, 0, items);
    const batch = bank.source.batch(Array.from({ length: items }, (_, i) => i));
    batch.y.dispose();
    x = o.device && o.device !== 'cpu' ? batch.x.to({ device: o.device }) : batch.x;
    if (x !== batch.x) batch.x.dispose();
    const fisher = diagonalFisher(model, { inputs: x, labels, diffusion, draws: o.draws, seed: o.seed, onProgress: o.onProgress });
    return { ...fisher, items };
  } finally {
    x?.dispose();
    diffusion.dispose();
    bank.source.dispose();
  }
}
