// `difftune ewc`: how much of the pretrained model's knowledge fine-tuning overwrote, as the EWC
// distance of fine-tuned weights from the pretrained ones under the pretrained model's diagonal Fisher
// on its knowledge bank (src/eval/ewc.ts). Several fine-tuned models share one Fisher.
import * as path from 'path';
import { sha256File } from '../data/hash';
import { createDiffusion } from '../diffusion/create';
import { diagonalFisher, DiagonalFisher, ewcDistance, EwcResult } from '../eval/ewc';
import { DiT, DiTConfig } from '../models/dit';
import { loadDiT, readDiTConfig, siblingConfig } from '../models/dit-io';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { bankLabels } from '../tuning/bank';
import { openBank } from '../tuning/setup';
import { writeFileAtomic } from '../tuning/write-atomic';
import { parseFlags } from './args';
import { configureThreads } from './threads';

const FLAGS = {
  pretrained: { type: 'string', help: 'the pretrained DiT (.safetensors with its .json, or an official .pt)' },
  finetuned: { type: 'string', help: 'fine-tuned DiT(s) of the same architecture, comma-separated (e.g. finetune runs\' model.safetensors)' },
  bank: { type: 'string', help: 'the knowledge bank sampled from --pretrained (`difftune bank`): the inputs of the Fisher' },
  'pretrained-config': { type: 'string', default: '', help: 'config JSON of the pretrained model (default: beside its weights)' },
  key: { type: 'string', default: '', help: "which weights of a training checkpoint: 'ema' (default when present) or 'model'" },
  n: { type: 'number', default: 256, help: 'bank items in the Fisher (the first n; fewer if the bank is smaller)' },
  draws: { type: 'number', default: 1, help: 'timestep and noise draws per item' },
  labels: { type: 'string', default: 'null', help: "'null': the unconditional branch, as Diff-Tuning replays the bank; 'bank': the labels the items were sampled with" },
  seed: { type: 'number', default: 0, help: 'seed of the timesteps and noise' },
  out: { type: 'string', default: 'ewc.json', help: 'the result JSON' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
} as const;

/** Config fields a fine-tuned model shares with its pretrained one (the label table may be new: compared by shape). */
const SAME_ARCHITECTURE = ['inputSize', 'patchSize', 'inChannels', 'hiddenSize', 'depth', 'numHeads', 'mlpRatio', 'learnSigma'] as const;

export interface EwcReport {
  command: string;
  pretrained: string;
  bank: string;
  fisher: { items: number; draws: number; samples: number; labels: string; seed: number; seconds: number };
  models: Array<{ file: string } & EwcResult>;
}

/**
 * The model the Fisher is taken at: the pretrained weights in the fine-tuned architecture, so that
 * DiffFit's gammas (absent from the pretrained file) enter at their identity value 1 and get a Fisher too.
 */
function pretrainedAs(file: string, config: DiTConfig, device: Device, key: string | undefined): DiT {
  const { model, report } = loadDiT(file, { config, device, key, partial: true });
  const bad = [...report.missing.filter((k) => !/\.gamma[12]$/.test(k)), ...report.unexpected, ...report.mismatched.map((m) => m.key)];
  if (bad.length) {
    throw new Error(`--pretrained ${file} does not match the fine-tuned models' architecture (${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', ...' : ''})`);
  }
  return model;
}

function stateOf(model: DiT): Map<string, Tensor> {
  return new Map(model.namedParameters());
}

export async function runEwc(argv: string[], log: (m: string) => void = (m) => console.log(m)): Promise<EwcReport | null> {
  const flags = parseFlags('ewc', 'EWC distance of fine-tuned DiTs from their pretrained model (diagonal Fisher on the knowledge bank).', FLAGS, argv);
  if (!flags) return null;
  for (const k of ['n', 'draws'] as const) if (!Number.isInteger(flags[k]) || flags[k] < 1) throw new Error(`--${k} must be a positive integer, got ${flags[k]}`);
  if (!Number.isInteger(flags.seed) || flags.seed < 0) throw new Error(`--seed must be a non-negative integer, got ${flags.seed}`);
  if (flags.labels !== 'null' && flags.labels !== 'bank') throw new Error(`--labels must be 'null' or 'bank', got '${flags.labels}'`);
  const files = flags.finetuned.split(',').map((s) => s.trim()).filter(Boolean);
  if (!files.length) throw new Error('--finetuned: no file given');
  configureThreads();
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);
  const key = flags.key || undefined;

  const finetuned = files.map((f) => ({ file: f, model: loadDiT(f, { device, key }).model }));
  const disposeAll = (m: DiT): void => { for (const p of m.parameters()) p.dispose(); for (const [, b] of m.namedBuffers()) b.dispose(); };
  let fisher: DiagonalFisher | null = null;
  let pretrained: DiT | null = null;
  try {
    const configFile = flags['pretrained-config'] || siblingConfig(flags.pretrained);
    if (!configFile) throw new Error(`--pretrained ${flags.pretrained}: no config JSON beside it; pass --pretrained-config`);
    const base = readDiTConfig(configFile);
    const arch = finetuned[0].model.config;
    for (const f of finetuned) {
      const c = f.model.config;
      for (const k of SAME_ARCHITECTURE) {
        if (c[k] !== base[k]) throw new Error(`--finetuned ${f.file}: ${k} ${c[k]}, but the pretrained model has ${base[k]}; EWC compares weights of one architecture`);
      }
      if (c.useGamma !== arch.useGamma || c.gammaDepth !== arch.gammaDepth) {
        throw new Error(`--finetuned ${f.file}: DiffFit gammas differ from ${files[0]}'s; one Fisher serves one architecture (run them separately)`);
      }
    }
    pretrained = pretrainedAs(flags.pretrained, { ...base, useGamma: arch.useGamma, gammaDepth: arch.gammaDepth }, device, key);
    const c = pretrained.config;
    if (flags.labels === 'null' && !(c.classDropoutProb > 0)) {
      throw new Error(`--labels null: the pretrained model has no null label row (class_dropout_prob 0); use --labels bank`);
    }
    // The Fisher must stand for this model's knowledge: a bank from another model is refused.
    const bank = await openBank(flags.bank, { resolution: c.inputSize, modelSha256: sha256File(flags.pretrained) });
    const items = Math.min(flags.n, bank.source.length);
    const labels = flags.labels === 'null'
      ? new Array<number>(items).fill(c.numClasses)
      : bankLabels(bank.manifest.settings, 0, items);
    const started = Date.now();
    const diffusion = createDiffusion({ timestepRespacing: '', learnSigma: c.learnSigma });
    try {
      const inputs = bank.source.batch(Array.from({ length: items }, (_, i) => i));
      try {
        const x = inputs.x.to({ device });
        log(`Fisher of ${flags.pretrained} on ${items} bank items x ${flags.draws} draw(s), ${flags.labels} labels`);
        fisher = diagonalFisher(pretrained, {
          inputs: x, labels, diffusion, draws: flags.draws, seed: flags.seed,
          onProgress: (done, total) => { if (done % 64 === 0 || done === total) log(`  ${done}/${total}`); },
        });
        if (x !== inputs.x) x.dispose();
      } finally {
        inputs.x.dispose();
        inputs.y.dispose();
      }
    } finally {
      diffusion.dispose();
      bank.source.dispose();
    }
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const theta0 = stateOf(pretrained);
    const models = finetuned.map((f) => ({ file: path.resolve(f.file), ...ewcDistance(fisher!, theta0, stateOf(f.model)) }));
    for (const m of models) {
      log(`${m.file}: EWC ${m.total.toPrecision(4)} (${m.changed} of ${m.elements} weights moved; ${m.meanOverChanged.toExponential(3)} per moved weight)` +
        (m.notInFisher.length ? `; ${m.notInFisher.length} adapter tensors not counted` : ''));
    }
    const report: EwcReport = {
      command: `difftune ewc ${argv.join(' ')}`,
      pretrained: path.resolve(flags.pretrained),
      bank: path.resolve(flags.bank),
      fisher: { items, draws: flags.draws, samples: fisher.samples, labels: flags.labels, seed: flags.seed, seconds },
      models,
    };
    writeFileAtomic(flags.out, JSON.stringify(report, null, 2) + '\n');
    log(`wrote ${flags.out}`);
    return report;
  } finally {
    if (fisher) for (const v of fisher.values.values()) v.dispose();
    if (pretrained) disposeAll(pretrained);
    for (const f of finetuned) disposeAll(f.model);
  }
}
