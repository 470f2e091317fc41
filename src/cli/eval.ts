// `difftune eval`: FID and KID of generated samples against a dataset split, named by extractor.
import * as path from 'path';
import * as torch from '../torch';
import { Device } from '../torch';
import { evaluateSamples, EvalMetrics } from '../eval/evaluate';
import { loadExtractor } from '../eval/extractor';
import { parseRefSpec } from '../eval/reference-stats';
import { decodeLatentImages } from '../data/latent-images';
import { loadVae } from '../models/vae-io';
import { writeFileAtomic } from '../tuning/write-atomic';
import { oneOf, parseFlags } from './args';
import { configureThreads } from './threads';
import { checkWritableDir } from './writable';

const FLAGS = {
  samples: { type: 'string', help: 'generated samples: a folder of images (searched recursively) or a .safetensors file (samples [N, C, H, W], uint8 or [-1, 1])' },
  ref: { type: 'string', help: 'reference dataset: DIR[:train|eval|all] (a class-subfolder folder; default split all)' },
  extractor: { type: 'string', default: 'iconnet', help: "feature network: 'iconnet' or 'fashion' (shipped; either with :FILE for other weights) or 'inception:FILE' (pytorch-fid weights)" },
  out: { type: 'string', default: '', help: 'write the metrics as JSON to this file' },
  'kid-subsets': { type: 'number', default: 100, help: 'KID: random subsets averaged over' },
  'kid-subset-size': { type: 'number', default: 1000, help: 'KID: rows per subset (capped by both sets)' },
  seed: { type: 'number', default: 0, help: "seed of KID's subset draws" },
  'split-seed': { type: 'number', default: 0, help: 'seed of the train/eval split of --ref (as extractor train --seed)' },
  'eval-fraction': { type: 'number', default: 0.1, help: 'eval part of the --ref split' },
  'precision-recall': { type: 'boolean', default: false, help: 'also compute improved precision/recall (k = 3; slower)' },
  resolution: { type: 'number', default: 0, help: 'side images are decoded at (0: the first sample image\'s width)' },
  'on-error': { type: 'string', default: 'throw', value: 'throw|skip', help: "an unreadable reference image: stop naming it ('throw'), or leave it out with a warning ('skip'; finetune's data.onError)" },
  'no-cache': { type: 'boolean', default: false, help: 'neither read nor write the reference statistics cache ($DIFFTUNE_CACHE/stats or ~/.cache/difftune/stats)' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
  vae: { type: 'string', default: '', help: 'latent samples (a .safetensors of [N, 4, h, w] from a latent DiT): decode them through this VAE (diffusers folder or weights file) before feature extraction' },
  'vae-batch': { type: 'number', default: 8, help: 'latents decoded per VAE forward' },
} as const;

/** --samples FILE.safetensors of latents, decoded through --vae into float images in [-1, 1]. */
function decodedSamples(file: string, vaePath: string, device: Device, batch: number): torch.Tensor {
  if (!/\.safetensors$/i.test(file)) throw new Error(`--vae: --samples must be a .safetensors file of latents, got ${file}`);
  const tensors = torch.loadSafetensors(file);
  try {
    const latents = tensors.get('samples') ?? (tensors.size === 1 ? [...tensors.values()][0] : undefined);
    if (!latents) throw new Error(`--samples: ${file} has no 'samples' tensor (it holds ${[...tensors.keys()].join(', ') || 'nothing'})`);
    const vae = loadVae(vaePath, { device });
    console.log(`decoding ${latents.shape[0]} latent samples through ${vaePath}`);
    return decodeLatentImages(vae, latents, batch);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

export async function runEval(argv: string[]): Promise<void> {
  const flags = parseFlags('eval', 'FID and KID of generated samples against a dataset split (metrics named by extractor: fid_iconnet, fid_inception).', FLAGS, argv);
  if (!flags) return;
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);
  if (flags.resolution !== 0 && !(Number.isInteger(flags.resolution) && flags.resolution > 0)) {
    throw new Error(`--resolution must be a positive integer (or 0 for the samples' own size), got ${flags.resolution}`);
  }
  const refOnError = oneOf('on-error', flags['on-error'], ['throw', 'skip'] as const);
  const ref = parseRefSpec(flags.ref, { splitSeed: flags['split-seed'], evalFraction: flags['eval-fraction'] });
  configureThreads();
  if (flags.out) checkWritableDir('out', path.dirname(path.resolve(flags.out))); // before the features are computed
  const extractor = loadExtractor(flags.extractor, { device });
  let metrics: EvalMetrics;
  const samples = flags.vae ? decodedSamples(flags.samples, flags.vae, device, flags['vae-batch']) : flags.samples;
  try {
    metrics = await evaluateSamples({
      samples,
      ref,
      extractor,
      kidSubsets: flags['kid-subsets'],
      kidSubsetSize: flags['kid-subset-size'],
      seed: flags.seed,
      precisionRecall: flags['precision-recall'],
      resolution: flags.resolution || undefined,
      useCache: !flags['no-cache'],
      refOnError,
      log: (m) => console.log(m),
    });
  } finally {
    extractor.dispose();
    if (typeof samples !== 'string') samples.dispose();
  }
  const name = extractor.name;
  const line = [`fid_${name} ${fmt(metrics[`fid_${name}`])}`, `kid_${name} ${fmt(metrics[`kid_${name}`])} ± ${fmt(metrics[`kid_${name}_std`])}`];
  if (metrics[`precision_${name}`] !== undefined) line.push(`precision ${fmt(metrics[`precision_${name}`])}`, `recall ${fmt(metrics[`recall_${name}`])}`);
  const flag = metrics.reliable === false ? '  UNRELIABLE (too few samples or reference images: see the warnings)' : '';
  console.log(`${line.join(', ')} (n ${metrics.n} vs ${metrics.n_ref} reference images, ${fmt(metrics.seconds)} s)${flag}`);
  if (flags.out) {
    writeFileAtomic(path.resolve(flags.out), `${JSON.stringify(metrics, null, 2)}\n`);
    console.log(`wrote ${flags.out}`);
  }
}

function fmt(v: unknown): string {
  if (typeof v !== 'number') return String(v);
  return Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(4);
}
