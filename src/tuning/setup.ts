// What a run trains on, built from its config: the model (pretrained, or fresh for pretraining;
// label space adapted; PEFT applied), the target images and the knowledge bank.
import * as path from 'path';
import { BatchSource } from '../data/batch-iterator';
import { sha256File } from '../data/hash';
import { ImageDataset } from '../data/image-dataset';
import { isLatentCache, LatentCacheDataset, vaeWeightsFile } from '../data/latent-cache';
import { splitIndices } from '../data/split';
import { loadExtractor, FeatureExtractor } from '../eval/extractor';
import { FeatureStats } from '../eval/feature-stats';
import { DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, parseRefSpec, referenceStats } from '../eval/reference-stats';
import { DiT, DiTConfig, ditConfig, DiTModelName, isDiTModelName, DIT_MODELS } from '../models/dit';
import { loadDiT, readDiTConfig } from '../models/dit-io';
import { adaptLabelSpace } from '../models/label-space';
import { applyPeft, PEFT_DEFAULT_LR } from '../models/peft';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { loadBankLatents, verifyBank } from './bank';
import { BankManifest } from './bank-manifest';
import { ConfigError } from './config-schema';
import { TrainConfig, usesBank } from './config';

/**
 * A knowledge bank as a batch source, after checking its manifest (and, given its sha256, that it was
 * sampled from this model): PNG banks decode like any image folder, latent banks load their shards.
 */
export async function openBank(dir: string, o: { resolution: number; onError?: 'throw' | 'skip'; warn?: (m: string) => void; modelSha256?: string }): Promise<{ source: BatchSource & { dispose(): void }; manifest: BankManifest; latent: boolean }> {
  const manifest = verifyBank(dir, { modelSha256: o.modelSha256 });
  if (manifest.storage === 'png') {
    return { source: await ImageDataset.fromFolder(dir, { resolution: o.resolution, onError: o.onError, warn: o.warn }), manifest, latent: false };
  }
  const { x, y } = loadBankLatents(dir);
  return { source: new TensorSource(x, y), manifest, latent: true };
}

/** A source of already-normalised tensors (latents, or images a caller prepared). */
export class TensorSource implements BatchSource {
  constructor(readonly x: Tensor, readonly y: Tensor) {
    if (x.shape[0] !== y.shape[0]) throw new Error(`TensorSource: ${x.shape[0]} inputs but ${y.shape[0]} labels`);
    x.keep();
    y.keep();
  }
  get length(): number {
    return this.x.shape[0];
  }
  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: Tensor; y: Tensor } {
    return torch.scope(() => {
      const idx = torch.tensor(Array.from(indices), { dtype: 'int64' });
      let x = this.x.indexSelect(0, idx);
      if (flip && Array.from(flip).some(Boolean)) {
        const mask = torch.tensor(Array.from(flip, (f) => (f ? 1 : 0)), { dtype: 'bool' }).reshape([-1, ...x.shape.slice(1).map(() => 1)]);
        x = torch.where(mask, x.flip([x.ndim - 1]), x);
      }
      return { x, y: this.y.indexSelect(0, idx) };
    });
  }
  dispose(): void {
    this.x.dispose();
    this.y.dispose();
  }
}

export interface RunInputs {
  model: DiT;
  target: BatchSource;
  classes: string[];
  /** Set when the target is a latent cache (the model trains in the VAE's latent space). */
  latentCache?: LatentCacheDataset | null;
  bank: BatchSource | null;
  /** Whether horizontal flips apply (pixels: flip the image; a latent cache: take the stored flipped image's latents). */
  flipTarget: boolean;
  flipBank: boolean;
  /** sha256 of the pretrained weights file (null when pretraining). */
  pretrainedSha256: string | null;
  /** In-loop evaluation: the feature network and the reference statistics (null when eval.every is 0). */
  evaluator?: { extractor: FeatureExtractor; refStats: FeatureStats; ref: string } | null;
}

/** The in-loop evaluator: extractor and cached reference statistics of eval.ref (or the target's held-out split). */
async function prepareEvaluator(c: TrainConfig, resolution: number, log: (msg: string) => void): Promise<RunInputs['evaluator']> {
  if (c.eval.every === 0) return null;
  const ref = c.eval.ref ?? `${c.data.target}:${c.data.split === 'train' ? 'eval' : 'all'}`;
  const extractor = loadExtractor(c.eval.extractor, { device: c.run.device as torch.Device });
  const r = await referenceStats(parseRefSpec(ref), extractor, { resolution, log, onError: c.data.onError, warn: (m) => log(`warning: ${m}`) });
  r.features.dispose();
  log(`in-loop evaluation every ${c.eval.every} steps: ${c.eval.samples} samples against ${ref} (${r.count} images, fid_${extractor.name})`);
  return { extractor, refStats: r.stats, ref };
}

/** What the target data fixes about the model: its side and channels (images: 3; a latent cache: the VAE's). */
interface DataShape { inputSize: number; inChannels: number }

function pretrainConfig(c: TrainConfig, shape: DataShape, numClasses: number): DiTConfig {
  let base: DiTConfig;
  const size = { ...shape, numClasses, learnSigma: c.model.learnSigma, classDropoutProb: c.model.classDropoutProb };
  if (c.model.config) base = { ...readDiTConfig(c.model.config), ...size };
  else if (c.model.name && isDiTModelName(c.model.name)) base = ditConfig(c.model.name as DiTModelName, size);
  else throw new ConfigError('config', 'model.name', `unknown DiT '${c.model.name}' (known: ${Object.keys(DIT_MODELS).join(', ')})`);
  const o = c.model;
  return {
    ...base,
    ...(o.hiddenSize !== null ? { hiddenSize: o.hiddenSize } : {}),
    ...(o.depth !== null ? { depth: o.depth } : {}),
    ...(o.numHeads !== null ? { numHeads: o.numHeads } : {}),
    ...(o.patchSize !== null ? { patchSize: o.patchSize } : {}),
    useGamma: c.peft.method === 'difffit',
  };
}

/**
 * The architecture of the pretrained weights: model.config, else the named official model
 * (model.name, e.g. 'DiT-XL/2' for DiT-XL-2-256x256.pt, which carries no config) sized by the
 * data, else the config file beside the weights (undefined).
 */
function pretrainedConfig(c: TrainConfig, shape: DataShape): DiTConfig | undefined {
  if (c.model.config) return readDiTConfig(c.model.config);
  if (!c.model.name) return undefined;
  if (!isDiTModelName(c.model.name)) throw new ConfigError('config', 'model.name', `unknown DiT '${c.model.name}' (known: ${Object.keys(DIT_MODELS).join(', ')})`);
  return ditConfig(c.model.name, shape);
}

/** The pretrained model, with DiffFit's gammas (initialised to 1, so the function is unchanged) when asked for. */
function loadPretrained(c: TrainConfig, shape: DataShape, log: (msg: string) => void): DiT {
  const file = c.model.ckpt!;
  const config = pretrainedConfig(c, shape);
  let model: DiT;
  try {
    let warnings: string[];
    ({ model, warnings } = loadDiT(file, { config, configFile: undefined, skipUnknown: c.model.skipUnknown }));
    for (const w of warnings) log(`warning: ${w}`);
  } catch (e) {
    if (!c.model.name || c.model.config) throw e;
    throw new Error(`${(e as Error).message}\n(model.name '${c.model.name}' was sized by data.target: ${shape.inChannels} input channels, ` +
      `${shape.inputSize}x${shape.inputSize}, 1000 classes; latent models need a latent cache from \`difftune datasets encode\` as data.target)`);
  }
  if (c.peft.method !== 'difffit' || model.config.useGamma) return model;
  const withGammas = new DiT({ ...model.config, useGamma: true }, { initialize: false });
  const sd = model.stateDict();
  for (const [name, t] of withGammas.stateDict()) if (!sd.has(name)) sd.set(name, t); // new gammas keep their ones
  withGammas.loadStateDict(sd);
  return withGammas;
}

/** A latent cache as the target: opened (shards checked by hash, and against model.vae when given). */
function openLatentTarget(c: TrainConfig, log: (msg: string) => void): LatentCacheDataset {
  const dir = c.data.target!;
  const vaeSha256 = c.model.vae ? sha256File(vaeWeightsFile(c.model.vae)) : undefined;
  const cache = LatentCacheDataset.open(dir, { vaeSha256 });
  const m = cache.manifest;
  if (c.data.resolution !== null && c.data.resolution !== m.resolution) {
    throw new ConfigError('config', 'data.resolution', `is ${c.data.resolution} but the latent cache ${dir} was encoded at ${m.resolution}`);
  }
  if (c.eval.every > 0) {
    throw new ConfigError('config', 'eval.every', 'in-loop FID is for pixel-space models; for a latent model set 0 and evaluate with `difftune sample --vae` and `difftune eval --vae`');
  }
  log(`target data: latent cache ${dir}: ${m.count} images at ${m.resolution}px in ${m.classes.length} classes, latents ${m.latentShape.join('x')}, ` +
    `VAE ${m.vae.file}${vaeSha256 ? ' (hash matches model.vae)' : ''}`);
  return cache;
}

export async function prepareInputs(c: TrainConfig, log: (msg: string) => void = console.log): Promise<RunInputs> {
  const targetDir = c.data.target!;
  const warn = (m: string): void => log(`warning: ${m}`);
  let latent = isLatentCache(targetDir) ? openLatentTarget(c, log) : null;
  const shape: DataShape = latent
    ? { inputSize: latent.latentShape[1], inChannels: latent.latentShape[0] }
    : { inputSize: c.data.resolution ?? 32, inChannels: 3 };
  let model: DiT | null = c.method === 'pretrain' ? null : loadPretrained(c, shape, log);
  const resolution = latent ? shape.inputSize : c.data.resolution ?? model?.config.inputSize ?? 32;
  if (model && model.config.inChannels !== shape.inChannels) {
    throw new ConfigError('config', 'data.target', latent
      ? `is a latent cache of ${shape.inChannels}-channel latents but the model takes ${model.config.inChannels} input channels`
      : `is an image folder but the model takes ${model.config.inChannels} input channels: latent models train on latent caches ` +
        `(difftune datasets encode --vae VAE --in ${targetDir} --out CACHE, then --data CACHE)`);
  }
  if (model && resolution !== model.config.inputSize) {
    throw new ConfigError('config', latent ? 'data.target' : 'data.resolution', latent
      ? `holds ${resolution}x${resolution} latents but the model's input size is ${model.config.inputSize}`
      : `is ${resolution} but the model's input size is ${model.config.inputSize}`);
  }
  let target: ImageDataset | LatentCacheDataset = latent ?? await ImageDataset.fromFolder(targetDir, { resolution, onError: c.data.onError, warn });
  if (c.data.split === 'train') {
    // The same seeded split that evaluation holds out (`--ref DIR:eval`); a cache keeps its folder's item order.
    const part = target.subset(splitIndices(target.length, { evalFraction: DEFAULT_EVAL_FRACTION, seed: DEFAULT_SPLIT_SEED }).train);
    if (target instanceof ImageDataset) target.dispose();
    target = part;
    if (latent) latent = part as LatentCacheDataset;
  }
  if (!latent) log(`target data: ${target.length} images in ${target.classes.length} classes from ${targetDir}${c.data.split === 'train' ? ' (train split)' : ''}`);
  else if (c.data.split === 'train') log(`  training on the train split: ${target.length} images`);

  if (!model) {
    model = new DiT(pretrainConfig(c, { ...shape, inputSize: resolution }, target.classes.length));
  } else {
    model = adaptLabelSpace(model, target.classes.length, c.labels.mode);
  }

  let bank: BatchSource | null = null;
  let flipBank = c.data.flip;
  const pretrainedSha256 = c.model.ckpt ? sha256File(c.model.ckpt) : null;
  if (usesBank(c.method)) {
    // Replay trains the unconditional branch through the null label row, which only exists when
    // the model was built with label dropout.
    if (!(model.config.classDropoutProb > 0)) {
      throw new Error(`method '${c.method}' replays the bank with the null label, but the model (${c.model.ckpt ?? c.model.name}) has no null label row (class_dropout_prob 0); use a model trained with label dropout or method 'full'`);
    }
  }
  // Without a bank only a memory plan is made (the trainer refuses to run without one).
  if (usesBank(c.method) && c.data.bank) {
    const dir = c.data.bank;
    const opened = await openBank(dir, { resolution, onError: c.data.onError, warn, modelSha256: pretrainedSha256 ?? undefined });
    bank = opened.source;
    if (opened.latent) flipBank = false;
    log(`knowledge bank: ${bank.length} samples from ${path.resolve(dir)}`);
  }

  applyPeft(model, {
    method: c.peft.method,
    loraRank: c.peft.loraRank,
    loraAlpha: c.peft.loraAlpha ?? undefined,
    adapterDim: c.peft.adapterDim,
    adapterScale: c.peft.adapterScale,
    trainLabelTable: c.labels.mode === 'fresh',
  });
  model.gradCheckpointing = c.model.gradCheckpointing;
  const evaluator = await prepareEvaluator(c, resolution, log);
  return { model, target, classes: target.classes, latentCache: latent, bank, flipTarget: c.data.flip, flipBank, pretrainedSha256, evaluator };
}

/** The learning rate a run uses: the config's, else the PEFT method's default, else 1e-4. */
export function learningRate(c: TrainConfig): number {
  return c.optim.lr ?? (PEFT_DEFAULT_LR as Record<string, number>)[c.peft.method] ?? 1e-4;
}
