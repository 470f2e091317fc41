// FID and KID of generated samples against a dataset split, through one feature extractor. The
// reference side comes from the statistics cache; only the samples go through the network.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { compareCodePoints, isImageFile } from '../data/image-folder';
import { FeatureExtractor, loadExtractor } from './extractor';
import { featureStats } from './feature-stats';
import { frechetDistance } from './frechet';
import { kid } from './kid';
import { precisionRecall } from './precision-recall';
import { decodeImageFiles, parseRefSpec, referenceStats, ReferenceSpec } from './reference-stats';

/** Below this many samples FID is dominated by its small-sample bias (and KID by noise). */
export const MIN_MEANINGFUL_SAMPLES = 1000;

/**
 * A warning when n samples are too few for the metric to mean much, else null: FID is biased
 * upward roughly as 1/n, and with n <= dim the sample covariance is singular.
 */
export function sampleCountWarning(n: number, dim: number, what = 'FID'): string | null {
  if (n >= MIN_MEANINGFUL_SAMPLES && n > dim) return null;
  const why = n <= dim ? `no more than the feature dimension (${dim}), so the covariance is singular` : `fewer than ${MIN_MEANINGFUL_SAMPLES}`;
  return `${what} from ${n} samples (${why}) is biased upward and noisy: compare only numbers computed with the same sample count`;
}

/** A warning when the reference split is too small for FID/KID against it to mean much, else null. */
export function referenceCountWarning(nRef: number, dim: number): string | null {
  if (nRef >= MIN_MEANINGFUL_SAMPLES && nRef > dim) return null;
  const why = nRef <= dim ? `no more than the feature dimension (${dim}), so its covariance is singular` : `fewer than ${MIN_MEANINGFUL_SAMPLES}`;
  return `only ${nRef} reference images (${why}): FID and KID against them are unreliable (KID can even be negative); ` +
    `use a reference split of at least ${MIN_MEANINGFUL_SAMPLES} images`;
}

export interface EvaluateOptions {
  /** uint8 [N, 3, H, W] (or float in [-1, 1]), a folder of images (searched recursively) or a .safetensors file of samples. */
  samples: Tensor | string;
  /** 'DIR[:train|eval|all]' or a parsed spec. */
  ref: string | ReferenceSpec;
  /** An extractor, or its spec for loadExtractor (default 'iconnet'). A spec's extractor is freed afterwards. */
  extractor?: FeatureExtractor | string;
  /** KID subsets (default 100) and rows per subset (default 1000, capped by both sets). */
  kidSubsets?: number;
  kidSubsetSize?: number;
  /** Seed of KID's subset draws (default 0). */
  seed?: number;
  /** Also compute improved precision/recall (k = 3); slower. */
  precisionRecall?: boolean;
  /** Side images are decoded at: default the first sample's width (folders), the tensor's side otherwise. */
  resolution?: number;
  cacheDir?: string;
  useCache?: boolean;
  /** An unreadable reference image: stop naming it (default), or leave it out with a warning. */
  refOnError?: 'throw' | 'skip';
  log?: (message: string) => void;
  warn?: (message: string) => void;
}

/** Flat, JSON-ready: fid_<extractor>, kid_<extractor>, kid_<extractor>_std, n, n_ref, and what they were computed from. */
export type EvalMetrics = Record<string, number | string | boolean | string[]>;

export async function evaluateSamples(o: EvaluateOptions): Promise<EvalMetrics> {
  const start = Date.now();
  const warn = o.warn ?? ((m: string) => console.warn(`warning: ${m}`));
  const log = o.log ?? (() => {});
  const warnings: string[] = [];
  const note = (m: string): void => {
    warnings.push(m);
    warn(m);
  };
  const spec = typeof o.ref === 'string' ? parseRefSpec(o.ref) : o.ref;
  checkRefFolder(spec.dir);
  const ownExtractor = typeof o.extractor !== 'object';
  const extractor = typeof o.extractor === 'object' ? o.extractor : loadExtractor(o.extractor ?? 'iconnet');
  const name = extractor.name;
  let samples: Tensor | null = null;
  let sampleFeatures: Tensor | null = null;
  let refFeatures: Tensor | null = null;
  try {
    samples = await loadSamples(o.samples, o.resolution);
    const n = samples.shape[0];
    if (n < 2) throw new Error(`${describe(o.samples)}: FID needs at least 2 samples, got ${n}`);
    const resolution = samples.shape[3];
    const ref = await referenceStats(spec, extractor, { resolution, cacheDir: o.cacheDir, useCache: o.useCache, onError: o.refOnError, log, warn });
    if (ref.count < 2) throw new Error(`${spec.dir} (${spec.split}): FID needs at least 2 reference images, got ${ref.count}`);
    const refWarning = referenceCountWarning(ref.count, extractor.dim);
    if (refWarning) note(refWarning);
    refFeatures = ref.features;
    log(`reference ${ref.fromCache ? 'statistics from the cache' : 'statistics computed and cached'}: ${ref.file}`);
    sampleFeatures = extractor.features(samples);
    samples.dispose();
    samples = null;
    const fid = frechetDistance(featureStats(sampleFeatures), ref.stats);
    const countWarning = sampleCountWarning(n, extractor.dim);
    if (countWarning) note(countWarning);
    const subsetSize = Math.min(o.kidSubsetSize ?? 1000, n, refFeatures.shape[0]);
    const kidSubsets = o.kidSubsets ?? 100;
    const k = kid(sampleFeatures, refFeatures, { subsets: kidSubsets, subsetSize, seed: o.seed ?? 0, warn: note });
    const metrics: EvalMetrics = {
      [`fid_${name}`]: fid,
      [`kid_${name}`]: k.mean,
      [`kid_${name}_std`]: k.std,
    };
    if (o.precisionRecall) {
      const pr = precisionRecall(refFeatures, sampleFeatures, { k: 3 });
      metrics[`precision_${name}`] = pr.precision;
      metrics[`recall_${name}`] = pr.recall;
    }
    return {
      ...metrics,
      // false when the sample or reference count makes the numbers unreliable (the warnings say why).
      reliable: !countWarning && !refWarning,
      n,
      n_ref: ref.count,
      extractor: name,
      extractor_weights: extractor.weightsFile,
      extractor_weights_sha256: extractor.weightsHash,
      feature_dim: extractor.dim,
      samples: describe(o.samples),
      ref: path.resolve(spec.dir),
      ref_split: spec.split,
      ...(spec.split === 'all' ? {} : { ref_split_seed: spec.splitSeed, ref_eval_fraction: spec.evalFraction }),
      resolution,
      kid_subsets: kidSubsets,
      kid_subset_size: subsetSize,
      reference_from_cache: ref.fromCache,
      seconds: (Date.now() - start) / 1000,
      warnings,
    };
  } finally {
    samples?.dispose();
    sampleFeatures?.dispose();
    refFeatures?.dispose();
    if (ownExtractor) extractor.dispose();
  }
}

function describe(samples: Tensor | string): string {
  return typeof samples === 'string' ? path.resolve(samples) : `<tensor [${samples.shape.join(', ')}]>`;
}

function checkRefFolder(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new Error(`--ref: dataset folder ${dir} does not exist (expected DATASET_DIR[:train|eval|all], a folder of class sub-folders)`);
  }
  if (!st.isDirectory()) throw new Error(`--ref: ${dir} is not a folder (expected DATASET_DIR[:train|eval|all])`);
}

/**
 * Samples as uint8 [N, 3, H, W]. Float tensors are taken as [-1, 1] and quantised as DiT's
 * sample_ddp.py does (clamp(127.5 x + 128, 0, 255), truncated), so files and PNGs agree.
 */
export async function loadSamples(samples: Tensor | string, resolution?: number): Promise<Tensor> {
  if (samples instanceof Tensor) return toUint8Images(samples, '<tensor>');
  if (typeof samples !== 'string') throw new TypeError('samples: expected a Tensor, a folder of images or a .safetensors file');
  let st: fs.Stats;
  try {
    st = fs.statSync(samples);
  } catch {
    throw new Error(`--samples: ${samples} does not exist (expected a folder of images or a .safetensors file)`);
  }
  if (st.isDirectory()) {
    const files = listImagesRecursive(samples);
    if (files.length === 0) throw new Error(`--samples: no images in ${samples}`);
    const side = resolution ?? (await sharp(files[0]).metadata()).width;
    if (!side) throw new Error(`--samples: cannot read the size of ${files[0]}`);
    return decodeImageFiles(files, side);
  }
  if (!/\.safetensors$/i.test(samples)) throw new Error(`--samples: ${samples} is neither a folder nor a .safetensors file`);
  const tensors = torch.loadSafetensors(samples);
  try {
    const chosen = tensors.get('samples') ?? tensors.get('images') ?? (tensors.size === 1 ? [...tensors.values()][0] : undefined);
    if (!chosen) throw new Error(`--samples: ${samples} has no 'samples' or 'images' tensor (it holds ${[...tensors.keys()].join(', ') || 'nothing'})`);
    return toUint8Images(chosen, samples);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

function toUint8Images(t: Tensor, what: string): Tensor {
  if (t.ndim !== 4 || (t.shape[1] !== 3 && t.shape[1] !== 1)) {
    throw new Error(`${what}: expected samples [N, 3, H, W] (or [N, 1, H, W]), got [${t.shape.join(', ')}]`);
  }
  if (t.dtype === 'uint8') return t.clone();
  if (!torch.isFloating(t.dtype)) throw new Error(`${what}: expected uint8 or floating samples, got ${t.dtype}`);
  return torch.scope(() => t.float().mul(127.5).add(128).clamp(0, 255).to({ dtype: 'uint8' }));
}

function listImagesRecursive(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    const entries = fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => compareCodePoints(a.name, b.name));
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (isImageFile(e.name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}
