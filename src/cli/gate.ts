// `difftune gate`: the source-model quality gate. Samples `--per-class` images of every class with
// the knowledge bank's sampler settings, classifies them with the domain's classifier (the shipped
// iconnet one by default), and compares the accuracy with the classifier's on the held-out real
// images of --data: the gate passes at >= 75% of it. Prints the verdict, writes --out as JSON.
import * as fs from 'fs';
import * as path from 'path';
import { createDiffusion } from '../diffusion/create';
import { classIndexMap, classify, gateResult, GATE_MIN_SHARE } from '../eval/class-gate';
import { DEFAULT_ICONNET_WEIGHTS, loadIconClassifier } from '../eval/extractor';
import { decodeImageFiles, splitFiles } from '../eval/reference-stats';
import { loadDiT, readDiTConfig } from '../models/dit-io';
import { saveImageGrid } from '../report/grid';
import { quantizeImages } from '../report/quantize';
import * as torch from '../torch';
import { Device } from '../torch';
import { sampleDiT } from '../tuning/bank';
import { writeFileAtomic } from '../tuning/write-atomic';
import { oneOf, parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { configureThreads } from './threads';

const FLAGS = {
  ckpt: { type: 'string', help: 'the DiT to gate (.safetensors with its .json beside it, or a training checkpoint: its EMA)' },
  key: { type: 'string', default: '', help: "which weights of an official training checkpoint (.pt): 'ema' (default) or 'model'; for difftune's checkpoints, `difftune export --weights model` first (a short run's EMA still holds its initialisation)" },
  'skip-unknown': SKIP_UNKNOWN_FLAG,
  config: { type: 'string', default: '', help: 'JSON with the official constructor arguments (default: X.json or config.json beside the weights)' },
  data: { type: 'string', help: 'the domain: a class-subfolder folder (its class names, and the held-out split of real images)' },
  classifier: { type: 'string', default: '', help: 'iconnet classifier weights (default: the shipped assets/extractor/iconnet-classifier.safetensors)' },
  'per-class': { type: 'number', default: 20, help: 'samples per class' },
  sampler: { type: 'string', default: 'ddpm', help: "ddpm or ddim (the bank's default: ddpm)" },
  steps: { type: 'number', default: 250, help: "respaced sampling steps (the bank's default: 250)" },
  cfg: { type: 'number', default: 1.5, help: "guidance scale (the bank's default for labelled banks: 1.5)" },
  'guide-channels': { type: 'string', default: '3', help: "'3' (the official DiT behaviour) or 'all'" },
  seed: { type: 'number', default: 0, help: 'seed of the sampling noise' },
  batch: { type: 'number', default: 64, help: 'samples per forward batch' },
  precision: { type: 'string', default: 'fp32', help: "'fp32' or 'bf16' autocast around the model" },
  'min-share': { type: 'number', default: GATE_MIN_SHARE, help: 'the sample accuracy must reach this share of the real accuracy' },
  'split-seed': { type: 'number', default: 0, help: 'seed of the train/eval split of --data (as pretraining with data.split train)' },
  'eval-fraction': { type: 'number', default: 0.1, help: 'held-out part of --data' },
  out: { type: 'string', default: '', help: 'write the result as JSON here' },
  grid: { type: 'string', default: '', help: 'also write the samples as a PNG grid here (one row of up to 8 per class)' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
} as const;

export async function runGate(argv: string[]): Promise<void> {
  const flags = parseFlags('gate', 'The source-model quality gate: class accuracy of its samples against that of held-out real images.', FLAGS, argv);
  if (!flags) return;
  if (!flags.ckpt) throw new Error('gate: --ckpt is required');
  if (!flags.data) throw new Error('gate: --data is required (the domain\'s class-subfolder folder)');
  const sampler = oneOf('sampler', flags.sampler, ['ddpm', 'ddim'] as const);
  const precision = oneOf('precision', flags.precision, ['fp32', 'bf16'] as const);
  const guide = oneOf('guide-channels', flags['guide-channels'], ['3', 'all'] as const);
  if (!Number.isInteger(flags['per-class']) || flags['per-class'] < 1) throw new Error(`--per-class must be a positive integer, got ${flags['per-class']}`);
  for (const f of [flags.out, flags.grid]) if (f) fs.mkdirSync(path.dirname(path.resolve(f)), { recursive: true });
  const device = flags.device as Device;
  configureThreads();

  const { model } = loadDiT(flags.ckpt, { config: flags.config ? readDiTConfig(flags.config) : undefined, key: flags.key || undefined, device, skipUnknown: flags['skip-unknown'] });
  model.eval();
  const c = model.config;
  const classifierFile = flags.classifier || DEFAULT_ICONNET_WEIGHTS;
  const { model: classifier, classes: classifierClasses } = loadIconClassifier(classifierFile, { device });
  // Real: the held-out split (the images pretraining with data.split train never saw); only those are decoded.
  const real = splitFiles({ dir: flags.data, split: 'eval', splitSeed: flags['split-seed'], evalFraction: flags['eval-fraction'] });
  if (real.classes.length !== c.numClasses) {
    throw new Error(`${flags.data} has ${real.classes.length} classes but the model ${flags.ckpt} has ${c.numClasses}`);
  }
  const toClassifier = classIndexMap(real.classes, classifierClasses, flags.data);
  const realLabels = real.labels.map((y) => toClassifier[y]);
  const realImages = await decodeImageFiles(real.files, c.inputSize);
  const realPredicted = classify(classifier, realImages);
  realImages.dispose();

  // Samples: per-class images of every class, the bank's sampler, fixed noise per batch.
  const labels = Array.from({ length: c.numClasses * flags['per-class'] }, (_, i) => Math.floor(i / flags['per-class']));
  const diffusion = createDiffusion({ timestepRespacing: flags.sampler === 'ddim' ? `ddim${flags.steps}` : String(flags.steps), learnSigma: c.learnSigma });
  const noise = new torch.Generator('cpu', flags.seed);
  const started = Date.now();
  const chunks: torch.Tensor[] = [];
  for (let start = 0; start < labels.length; start += flags.batch) {
    const part = labels.slice(start, start + flags.batch);
    chunks.push(torch.scope(() => {
      const xT = torch.randn([part.length, c.inChannels, c.inputSize, c.inputSize], { generator: noise }).to({ device });
      const x = sampleDiT(model, diffusion, {
        labels: torch.tensor(part, { dtype: 'int64', device }), noise: xT, cfg: flags.cfg,
        guideChannels: guide === 'all' ? 'all' : 3, sampler, clip: true, device, precision,
      });
      // Quantised as a saved PNG would be, so samples and real images reach the classifier alike.
      return quantizeImages(x);
    }));
    process.stdout.write(`\r  sampled ${Math.min(start + flags.batch, labels.length)}/${labels.length}`);
  }
  process.stdout.write('\n');
  const samples = torch.cat(chunks, 0);
  const result = gateResult(
    { predicted: classify(classifier, samples), labels: labels.map((y) => toClassifier[y]) },
    { predicted: realPredicted, labels: realLabels }, classifierClasses.length, flags['min-share']);
  const seconds = (Date.now() - started) / 1000;

  console.log(`sample accuracy ${(100 * result.accuracy).toFixed(1)}% (${result.samples} samples, ${flags.sampler} ${flags.steps} steps, cfg ${flags.cfg}); ` +
    `real held-out accuracy ${(100 * result.realAccuracy).toFixed(1)}% (${result.realImages} images)`);
  console.log(`share ${(100 * result.share).toFixed(1)}% of real (gate: >= ${(100 * result.minShare).toFixed(0)}%): ${result.passed ? 'PASSED' : 'FAILED'}`);
  if (flags.grid) {
    const perRow = Math.min(8, flags['per-class']);
    const rows = Array.from({ length: c.numClasses }, (_, k) => torch.arange(k * flags['per-class'], k * flags['per-class'] + perRow, 1, { dtype: 'int64' }));
    torch.scope(() => saveImageGrid(flags.grid, samples.indexSelect(0, torch.cat(rows, 0)).float().div(127.5).sub(1), perRow, 2));
    console.log(`wrote ${flags.grid}`);
  }
  if (flags.out) {
    const record = {
      ckpt: path.resolve(flags.ckpt), key: flags.key || 'ema', data: path.resolve(flags.data), classifier: path.resolve(classifierFile),
      sampler: flags.sampler, steps: flags.steps, cfg: flags.cfg, guideChannels: flags['guide-channels'], seed: flags.seed,
      samplesPerClass: flags['per-class'], precision: flags.precision, seconds,
      ...result, perClass: undefined, perClassAccuracy: Object.fromEntries(real.classes.map((name, k) => [name, result.perClass[toClassifier[k]]])),
    };
    writeFileAtomic(flags.out, JSON.stringify(record, null, 2) + '\n');
    console.log(`wrote ${flags.out}`);
  }
  samples.dispose();
  classifier.dispose();
  model.dispose();
}
