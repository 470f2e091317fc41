// `difftune forgetting`: the chain-of-forgetting probe between a pretrained and fine-tuned DiTs.
// --metric fid (src/eval/forgetting.ts): FID against a target image folder at each switch point;
// writes OUT/curve.json, OUT/forgetting.svg, OUT/forgetting.png and sample grids.
// --metric loss (src/eval/forgetting-loss.ts): eps-MSE per t bucket on held-out images; writes
// OUT/loss-curve.json, OUT/loss-forgetting.svg and .png.
import * as path from 'path';
import { createDiffusion } from '../diffusion/create';
import { ConditionalDenoiser } from '../diffusion/hybrid-sampler';
import { FeatureExtractor, loadExtractor } from '../eval/extractor';
import {
  checkSplits, DEFAULT_SPLITS, FORGETTING_DIRECTIONS, ForgettingResult, proportionalLabels, runForgettingProbe, writeForgettingReport,
} from '../eval/forgetting';
import { runLossProbe, writeLossForgettingReport } from '../eval/forgetting-loss';
import { decodeImageFiles, parseRefSpec, referenceStats, splitFiles } from '../eval/reference-stats';
import { seededPermutation } from '../data/batch-iterator';
import { DiT } from '../models/dit';
import { loadDiT, readDiTConfig } from '../models/dit-io';
import * as torch from '../torch';
import { Device } from '../torch';
import { oneOf, parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { configureThreads } from './threads';

const FLAGS = {
  metric: { type: 'string', default: 'fid', help: "'fid': FID when the pretrained model takes over the data end of the sampling chain (the paper's Fig. 1); 'loss': sampler-free, the eps-MSE of the pretrained and the fine-tuned models on held-out images per t bucket" },
  pretrained: { type: 'string', help: 'the pretrained DiT (.safetensors with its .json, or an official .pt)' },
  finetuned: { type: 'string', help: 'the fine-tuned DiT (e.g. a finetune run\'s model.safetensors); with --metric loss, several comma-separated (each named by its run folder, or NAME=FILE)' },
  dataset: { type: 'string', help: "the target data: an image folder root/<class>/<images>, optionally DIR:train|eval|all (FID reference; its classes are the labels)" },
  'pretrained-config': { type: 'string', default: '', help: 'config JSON of the pretrained model (default: beside its weights)' },
  'finetuned-config': { type: 'string', default: '', help: 'config JSON of the fine-tuned model (default: beside its weights)' },
  key: { type: 'string', default: '', help: "which weights of a training checkpoint: 'ema' (default when present) or 'model'" },
  'skip-unknown': SKIP_UNKNOWN_FLAG,
  n: { type: 'number', default: 500, help: 'samples per switch point (labels in the dataset\'s class proportions); --metric loss: held-out images (a seeded choice, all when fewer)' },
  buckets: { type: 'number', default: 10, help: '--metric loss: equal-width t buckets over the 1000 training steps' },
  draws: { type: 'number', default: 1, help: '--metric loss: t and noise draws per image and bucket' },
  steps: { type: 'string', default: '50', help: "timestep respacing: '50', 'ddim50', '250', ..." },
  sampler: { type: 'string', default: 'ddim', help: 'ddpm or ddim' },
  eta: { type: 'number', default: 0, help: 'DDIM eta' },
  splits: { type: 'string', default: DEFAULT_SPLITS.join(','), help: 'switch points: fractions of the reverse steps, from the data end (t = 0)' },
  cfg: { type: 'number', default: 1.5, help: 'classifier-free guidance scale of the fine-tuned model (1 = none)' },
  'pretrained-label': { type: 'string', default: 'null', help: "the pretrained model's label: 'null' (its unconditional branch) or 'same' (the target labels, with --cfg)" },
  reverse: { type: 'boolean', default: true, help: 'also run the reverse (pretrained on the noisy part); --reverse=false halves the time' },
  extractor: { type: 'string', default: 'iconnet', help: "feature extractor: 'iconnet' or 'fashion' (shipped weights; either with :FILE for other weights) or 'inception:FILE' (pytorch-fid weights)" },
  out: { type: 'string', default: 'forgetting-out', help: 'output folder' },
  seed: { type: 'number', default: 0, help: 'seed of x_T and the step noise (shared by every switch point) and of the label order' },
  batch: { type: 'number', default: 64, help: 'samples per forward batch' },
  previews: { type: 'number', default: 8, help: 'samples per switch point in the sample grids (0: no grids)' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
} as const;

function parseSplits(text: string): number[] {
  const values = text.split(',').map((s) => {
    const v = Number(s.trim());
    if (s.trim() === '' || !Number.isFinite(v)) throw new Error(`--splits: '${s}' is not a number (expected fractions like 0,0.1,...,1)`);
    return v;
  });
  return checkSplits(values, '--splits').sort((a, b) => a - b);
}

function denoiser(model: DiT): ConditionalDenoiser {
  const c = model.config;
  return { forward: (x, t, y) => model.forward(x, t, y), numClasses: c.numClasses, nullLabel: c.classDropoutProb > 0 ? c.numClasses : null };
}

export interface ForgettingDeps {
  /** Use this extractor instead of --extractor (tests). */
  extractor?: FeatureExtractor;
  log?: (msg: string) => void;
}

export async function runForgetting(argv: string[], deps: ForgettingDeps = {}): Promise<void> {
  const flags = parseFlags('forgetting', 'The chain-of-forgetting probe: FID when a pretrained model takes over part of a fine-tuned model\'s reverse chain.', FLAGS, argv);
  if (!flags) return;
  const log = deps.log ?? ((m: string) => console.log(m));
  if (flags.sampler !== 'ddpm' && flags.sampler !== 'ddim') throw new Error(`--sampler must be ddpm or ddim, got '${flags.sampler}'`);
  if (flags['pretrained-label'] !== 'null' && flags['pretrained-label'] !== 'same') {
    throw new Error(`--pretrained-label must be 'null' or 'same', got '${flags['pretrained-label']}'`);
  }
  for (const k of ['n', 'batch'] as const) if (!Number.isInteger(flags[k]) || flags[k] < 1) throw new Error(`--${k} must be a positive integer, got ${flags[k]}`);
  if (flags.n < 2) throw new Error('--n must be at least 2 (FID needs a covariance)');
  if (!Number.isInteger(flags.previews) || flags.previews < 0) throw new Error(`--previews must be a non-negative integer, got ${flags.previews}`);
  if (!Number.isInteger(flags.seed) || flags.seed < 0) throw new Error(`--seed must be a non-negative integer, got ${flags.seed}`);
  const metric = oneOf('metric', flags.metric, ['fid', 'loss'] as const);
  const splits = parseSplits(flags.splits);
  configureThreads();
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);

  const load = (file: string, configFile: string, what: string): DiT => {
    const { model, warnings } = loadDiT(file, { config: configFile ? readDiTConfig(configFile) : undefined, key: flags.key || undefined, device, skipUnknown: flags['skip-unknown'] });
    for (const w of warnings) log(`warning: ${what}: ${w}`);
    return model.eval();
  };
  if (metric === 'loss') return runLossForgetting(flags, argv, load, log);
  const pretrained = load(flags.pretrained, flags['pretrained-config'], 'pretrained');
  const finetuned = load(flags.finetuned, flags['finetuned-config'], 'fine-tuned');
  let extractor: FeatureExtractor | undefined;
  try {
    const a = pretrained.config;
    const b = finetuned.config;
    if (a.inputSize !== b.inputSize || a.inChannels !== b.inChannels) {
      throw new Error(`--pretrained makes ${a.inputSize}x${a.inputSize}x${a.inChannels} samples but --finetuned ${b.inputSize}x${b.inputSize}x${b.inChannels}; the probe needs one chain for both`);
    }
    if (a.learnSigma !== b.learnSigma) throw new Error(`--pretrained has learnSigma ${a.learnSigma} but --finetuned ${b.learnSigma}: both must use the same diffusion`);
    if (b.inChannels !== 3) throw new Error(`the models make ${b.inChannels}-channel samples; the probe needs RGB pixel models (latents need a VAE, not available yet)`);

    const spec = parseRefSpec(flags.dataset);
    const split = splitFiles(spec);
    if (split.classes.length > b.numClasses) {
      throw new Error(`--dataset ${flags.dataset} has ${split.classes.length} classes but the fine-tuned model only ${b.numClasses}`);
    }
    extractor = deps.extractor ?? loadExtractor(flags.extractor, { device });
    const reference = await referenceStats(spec, extractor, { resolution: b.inputSize, log, warn: (m) => log(`warning: ${m}`) });
    reference.features.dispose(); // (kept for KID; FID needs the statistics only)
    log(`reference: ${reference.count} images in ${split.classes.length} classes from ${flags.dataset} (${extractor.name} features${reference.fromCache ? ', cached' : ''})`);
    const labels = proportionalLabels(split.labels, flags.n, flags.seed);
    const diffusion = createDiffusion({ timestepRespacing: flags.steps, learnSigma: b.learnSigma });
    const started = Date.now();
    let result: ForgettingResult;
    try {
      result = runForgettingProbe({
        pretrained: denoiser(pretrained), finetuned: denoiser(finetuned), imageShape: [3, b.inputSize, b.inputSize],
        diffusion, sampler: flags.sampler, eta: flags.eta, splits, labels, cfgScale: flags.cfg,
        pretrainedLabels: flags['pretrained-label'], extractor, reference: reference.stats, batchSize: flags.batch, seed: flags.seed, device,
        directions: flags.reverse ? FORGETTING_DIRECTIONS : ['finetuned-then-pretrained'], previews: flags.previews, log,
      });
    } finally {
      diffusion.dispose();
    }
    try {
      const files = await writeForgettingReport(flags.out, result, {
        command: `difftune forgetting ${argv.join(' ')}`,
        pretrained: path.resolve(flags.pretrained), finetuned: path.resolve(flags.finetuned),
        dataset: path.resolve(spec.dir), datasetSplit: spec.split, referenceImages: reference.count, classes: split.classes.length,
        extractor: extractor.name, n: flags.n, respacing: flags.steps, sampler: flags.sampler, eta: flags.eta, cfg: flags.cfg,
        pretrainedLabel: flags['pretrained-label'], seed: flags.seed, seconds: Math.round((Date.now() - started) / 100) / 10,
      });
      log(`wrote ${files.curve}, ${files.svg}, ${files.png}${files.grids.length ? `, ${files.grids.join(', ')}` : ''}`);
    } finally {
      for (const t of Object.values(result.previews)) t?.dispose();
    }
  } finally {
    if (!deps.extractor) extractor?.dispose();
    for (const m of [pretrained, finetuned]) m.dispose();
  }
}

/** NAME=FILE, or FILE named by its folder (a run folder's model.safetensors) or else its own name. */
function namedModel(spec: string): { name: string; file: string } {
  const eq = spec.indexOf('=');
  if (eq > 0) return { name: spec.slice(0, eq), file: spec.slice(eq + 1) };
  const base = path.basename(spec).replace(/\.(safetensors|pt)$/i, '');
  return { name: base === 'model' ? path.basename(path.dirname(path.resolve(spec))) : base, file: spec };
}

type LossFlags = { pretrained: string; finetuned: string; dataset: string; 'pretrained-config': string; 'finetuned-config': string; n: number;
  buckets: number; draws: number; 'pretrained-label': string; seed: number; batch: number; out: string; device: string };

/** `--metric loss`: runLossProbe on up to --n held-out images of --dataset (src/eval/forgetting-loss.ts). */
async function runLossForgetting(flags: LossFlags, argv: string[], load: (file: string, configFile: string, what: string) => DiT, log: (m: string) => void): Promise<void> {
  const specs = flags.finetuned.split(',').map((s) => s.trim()).filter(Boolean).map(namedModel);
  if (specs.length === 0) throw new Error('--finetuned: expected at least one model file');
  const spec = parseRefSpec(flags.dataset);
  const split = splitFiles(spec);
  const pretrained = load(flags.pretrained, flags['pretrained-config'], 'pretrained');
  const finetuned: { name: string; model: DiT }[] = [];
  try {
    for (const s of specs) finetuned.push({ name: s.name, model: load(s.file, flags['finetuned-config'], s.name) });
    for (const f of finetuned) {
      const a = pretrained.config;
      const b = f.model.config;
      if (a.inputSize !== b.inputSize || a.inChannels !== b.inChannels || a.learnSigma !== b.learnSigma) {
        throw new Error(`--finetuned ${f.name}: makes ${b.inputSize}x${b.inputSize}x${b.inChannels} (learnSigma ${b.learnSigma}) but --pretrained ${a.inputSize}x${a.inputSize}x${a.inChannels} (learnSigma ${a.learnSigma}); the probe compares them on the same x_t`);
      }
      if (b.inChannels !== 3) throw new Error(`--finetuned ${f.name}: a ${b.inChannels}-channel model; the loss probe reads RGB image folders (pixel models)`);
      if (split.classes.length > b.numClasses) throw new Error(`--dataset ${flags.dataset} has ${split.classes.length} classes but --finetuned ${f.name} only ${b.numClasses}`);
    }
    const order = seededPermutation(split.files.length, flags.seed).slice(0, Math.min(flags.n, split.files.length));
    const chosen = Array.from(order);
    const images = await decodeImageFiles(chosen.map((i) => split.files[i]), pretrained.config.inputSize);
    const labels = chosen.map((i) => split.labels[i]);
    log(`loss probe: ${chosen.length} images of ${flags.dataset}, ${flags.buckets} t buckets x ${flags.draws} draws, models: pretrained, ${finetuned.map((f) => f.name).join(', ')}`);
    const diffusion = createDiffusion({ timestepRespacing: '', learnSigma: pretrained.config.learnSigma });
    const started = Date.now();
    try {
      const result = runLossProbe({
        pretrained: denoiser(pretrained), finetuned: finetuned.map((f) => ({ name: f.name, model: denoiser(f.model) })),
        images, labels, diffusion, buckets: flags.buckets, draws: flags.draws,
        pretrainedLabels: flags['pretrained-label'] as 'null' | 'same', seed: flags.seed, batchSize: flags.batch, device: flags.device as Device,
      });
      for (const b of result.buckets) {
        log(`  t ${b.tLow}-${b.tHigh}: ` + Object.entries(b.ratio).map(([n, r]) => `${n} ${r.value.toFixed(3)} [${r.low.toFixed(3)}, ${r.high.toFixed(3)}]`).join(', '));
      }
      const files = await writeLossForgettingReport(flags.out, result, {
        command: `difftune forgetting ${argv.join(' ')}`,
        pretrained: path.resolve(flags.pretrained), finetuned: Object.fromEntries(specs.map((s) => [s.name, path.resolve(s.file)])),
        dataset: path.resolve(spec.dir), datasetSplit: spec.split, classes: split.classes.length,
        pretrainedLabel: flags['pretrained-label'], seed: flags.seed, seconds: Math.round((Date.now() - started) / 100) / 10,
      });
      log(`wrote ${files.curve}, ${files.svg}, ${files.png}`);
    } finally {
      diffusion.dispose();
      images.dispose();
    }
  } finally {
    for (const m of [pretrained, ...finetuned.map((f) => f.model)]) m.dispose();
  }
}
