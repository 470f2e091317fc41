// Reference statistics of a dataset split (the "real" side of FID/KID), computed once and cached.
// The cache key names everything the numbers depend on: the dataset's files (paths, sizes,
// modification times, and dataset.json when the folder has one), the split, the extractor and
// the SHA-256 of its weights, and the image resolution. Any change is a different key, so a
// stale entry is never read; entries are safetensors files written atomically.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { hashSeed, seededPermutation } from '../data/batch-iterator';
import { decodeImage } from '../data/decode';
import { scanImageFolder } from '../data/image-folder';
import { splitIndices } from '../data/split';
import { FeatureExtractor } from './extractor';
import { FeatureStats, featureStats } from './feature-stats';

export type SplitName = 'train' | 'eval' | 'all';

/** A dataset folder (class sub-folders) and which part of it. */
export interface ReferenceSpec {
  dir: string;
  split: SplitName;
  /** The seeded split (as splitIndices): seed and eval fraction. Ignored for 'all'. */
  splitSeed: number;
  evalFraction: number;
}

/** The split used when none is given: the same seed and fraction as `difftune extractor train`'s defaults. */
export const DEFAULT_SPLIT_SEED = 0;
export const DEFAULT_EVAL_FRACTION = 0.1;
/** Reference features kept for KID (a seeded subset when the split is larger); FID uses all of them. */
export const DEFAULT_MAX_KID_FEATURES = 10_000;

const CACHE_FORMAT = 'difftune-reference-stats';
const CACHE_VERSION = 1;

/** 'DIR', 'DIR:train', 'DIR:eval' or 'DIR:all' (default all). */
export function parseRefSpec(spec: string, o: { splitSeed?: number; evalFraction?: number } = {}): ReferenceSpec {
  if (typeof spec !== 'string' || spec === '') throw new Error('--ref: expected DATASET_DIR[:train|eval|all]');
  const m = /^(.*):(train|eval|all)$/.exec(spec);
  const dir = m ? m[1] : spec;
  const split = (m ? m[2] : 'all') as SplitName;
  const splitSeed = o.splitSeed ?? DEFAULT_SPLIT_SEED;
  const evalFraction = o.evalFraction ?? DEFAULT_EVAL_FRACTION;
  if (!Number.isSafeInteger(splitSeed)) throw new RangeError(`split seed must be an integer, got ${splitSeed}`);
  if (!(evalFraction > 0 && evalFraction < 1)) throw new RangeError(`eval fraction must be in (0, 1), got ${evalFraction}`);
  return { dir, split, splitSeed, evalFraction };
}

/** The image files of a split, in ImageFolder order (throws naming the folder when it is missing or empty). */
export function splitFiles(spec: ReferenceSpec): { files: string[]; labels: number[]; classes: string[] } {
  const index = scanImageFolder(spec.dir);
  let picked = index.items.map((_, i) => i);
  if (spec.split !== 'all') {
    const parts = splitIndices(index.items.length, { evalFraction: spec.evalFraction, seed: spec.splitSeed });
    picked = parts[spec.split];
    if (picked.length === 0) {
      throw new Error(`${spec.dir}: the '${spec.split}' split is empty (${index.items.length} images, eval fraction ${spec.evalFraction})`);
    }
  }
  return { files: picked.map((i) => index.items[i].file), labels: picked.map((i) => index.items[i].label), classes: index.classes };
}

/**
 * A cheap identity of a dataset folder: SHA-256 over every image's relative path, size and
 * modification time (a stat, not a read, so 30k files take a fraction of a second), and over
 * dataset.json's bytes when the folder has one. Editing, adding, removing or renaming an image
 * changes it; so does copying the folder elsewhere (new mtimes), which only costs a recompute.
 */
export function datasetFingerprint(dir: string): string {
  const index = scanImageFolder(dir);
  const h = crypto.createHash('sha256');
  const manifest = path.join(dir, 'dataset.json');
  if (fs.existsSync(manifest)) h.update('dataset.json\0').update(fs.readFileSync(manifest)).update('\0');
  for (const { file } of index.items) {
    const st = fs.statSync(file);
    h.update(`${path.relative(dir, file)}\0${st.size}\0${st.mtimeMs}\n`);
  }
  return h.digest('hex');
}

/**
 * The identity of a dataset's content, independent of where and when it was copied: SHA-256 over
 * each image's relative path and the SHA-256 of its bytes (what a model card records).
 */
export function datasetContentHash(dir: string): string {
  const index = scanImageFolder(dir);
  const h = crypto.createHash('sha256');
  for (const { file } of index.items) {
    h.update(`${path.relative(dir, file)}\0`).update(crypto.createHash('sha256').update(fs.readFileSync(file)).digest()).update('\n');
  }
  return h.digest('hex');
}

/** $DIFFTUNE_CACHE/stats, else ~/.cache/difftune/stats. */
export function statsCacheDir(): string {
  const root = process.env.DIFFTUNE_CACHE || path.join(os.homedir(), '.cache', 'difftune');
  return path.join(root, 'stats');
}

/** What to do with a file that does not decode: stop naming it, or leave it out with a warning. */
export interface DecodeErrorPolicy {
  onError?: 'throw' | 'skip';
  warn?: (message: string) => void;
}

/**
 * Decodes image files to uint8 [N, 3, R, R] (ADM center crop, alpha on white), several at a time;
 * with onError 'skip', unreadable files are left out (N is then the number that decoded).
 */
export async function decodeImageFiles(files: string[], resolution: number, concurrency = Math.max(1, Math.min(4, os.availableParallelism())),
  policy: DecodeErrorPolicy = {}): Promise<Tensor> {
  if (files.length === 0) throw new Error('decodeImageFiles: no files');
  const plane = resolution * resolution;
  const pixels = new Uint8Array(files.length * 3 * plane);
  const decoded = new Uint8Array(files.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      let rgb: Uint8Array;
      try {
        rgb = await decodeImage(files[i], { resolution });
      } catch (e) {
        if (policy.onError !== 'skip') throw e;
        (policy.warn ?? console.warn)(`skipping ${files[i]}: ${(e as Error).message}`);
        continue;
      }
      decoded[i] = 1;
      const base = i * 3 * plane;
      for (let p = 0; p < plane; p++) { // HWC -> CHW
        pixels[base + p] = rgb[p * 3];
        pixels[base + plane + p] = rgb[p * 3 + 1];
        pixels[base + 2 * plane + p] = rgb[p * 3 + 2];
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  const kept = decoded.reduce((s, d) => s + d, 0);
  if (kept === files.length) return torch.fromTypedArray(pixels, [files.length, 3, resolution, resolution]);
  if (kept === 0) throw new Error(`none of the ${files.length} images decoded`);
  // Compact the decoded images, in file order.
  const out = new Uint8Array(kept * 3 * plane);
  let j = 0;
  for (let i = 0; i < files.length; i++) if (decoded[i]) out.set(pixels.subarray(i * 3 * plane, (i + 1) * 3 * plane), 3 * plane * j++);
  return torch.fromTypedArray(out, [kept, 3, resolution, resolution]);
}

export interface ReferenceStatsOptions {
  /** Side the reference images are decoded at (use the samples' size, so both take the same path into the extractor). */
  resolution: number;
  /** Default statsCacheDir(). */
  cacheDir?: string;
  /** false: neither read nor write the cache. */
  useCache?: boolean;
  maxKidFeatures?: number;
  /** An unreadable reference image: stop naming it (default), or leave it out with a warning. */
  onError?: 'throw' | 'skip';
  log?: (message: string) => void;
  warn?: (message: string) => void;
}

export interface ReferenceStats {
  stats: FeatureStats;
  /** float32 [m, dim] reference features for KID (m <= maxKidFeatures). Owned by the caller: dispose() it. */
  features: Tensor;
  /** Images in the split (stats.count). */
  count: number;
  key: string;
  /** The cache file (written or read). */
  file: string;
  fromCache: boolean;
}

/** The cache key's parts, in the order they are hashed (also stored in the file for people reading it). */
export function referenceKeyParts(spec: ReferenceSpec, extractor: FeatureExtractor, resolution: number, maxKidFeatures: number): Record<string, string | number> {
  return {
    version: CACHE_VERSION,
    dataset: datasetFingerprint(spec.dir),
    split: spec.split,
    splitSeed: spec.split === 'all' ? 0 : spec.splitSeed,
    evalFraction: spec.split === 'all' ? 0 : spec.evalFraction,
    extractor: extractor.name,
    weights: extractor.weightsHash,
    resolution,
    maxKidFeatures,
  };
}

/** Mean, covariance and (a subset of) the features of a split, from the cache when the key matches. */
export async function referenceStats(spec: ReferenceSpec, extractor: FeatureExtractor, o: ReferenceStatsOptions): Promise<ReferenceStats> {
  const { resolution } = o;
  if (!Number.isInteger(resolution) || resolution < 1) throw new RangeError(`referenceStats: resolution must be a positive integer, got ${resolution}`);
  const maxKid = o.maxKidFeatures ?? DEFAULT_MAX_KID_FEATURES;
  if (!Number.isInteger(maxKid) || maxKid < 2) throw new RangeError(`referenceStats: maxKidFeatures must be an integer >= 2, got ${maxKid}`);
  const log = o.log ?? (() => {});
  const warn = o.warn ?? ((m: string) => console.warn(m));
  // Statistics with unreadable images left out are not those of the whole split.
  const parts = { ...referenceKeyParts(spec, extractor, resolution, maxKid), ...(o.onError === 'skip' ? { onError: 'skip' } : {}) };
  const key = crypto.createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
  const file = path.join(o.cacheDir ?? statsCacheDir(), `${key}.safetensors`);
  const useCache = o.useCache ?? true;

  if (useCache && fs.existsSync(file)) {
    try {
      return { ...readCacheFile(file, extractor.dim), key, file, fromCache: true };
    } catch (e) {
      warn(`reference stats cache ${file} is unreadable (${(e as Error).message}); recomputing it`);
    }
  }

  const { files } = splitFiles(spec);
  log(`reference statistics: ${files.length} images of ${spec.dir} (${spec.split}) through ${extractor.name}`);
  let images: Tensor;
  try {
    images = await decodeImageFiles(files, resolution, undefined, { onError: o.onError, warn });
  } catch (e) {
    if (o.onError === 'skip') throw e;
    throw new Error(`reference ${spec.dir}: ${(e as Error).message} ` +
      "(to leave unreadable reference images out: eval --on-error skip; in training, data.onError 'skip')", { cause: e });
  }
  let features: Tensor;
  try {
    features = extractor.features(images);
  } finally {
    images.dispose();
  }
  try {
    const stats = featureStats(features);
    const kidRows = features.shape[0] <= maxKid ? features.clone() : torch.scope(() => {
      const perm = seededPermutation(features.shape[0], hashSeed(spec.splitSeed, 7)).subarray(0, maxKid);
      const idx = torch.fromTypedArray(BigInt64Array.from(Array.from(perm).sort((a, b) => a - b), (i) => BigInt(i)));
      return features.indexSelect(0, idx);
    });
    if (useCache) {
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        torch.scope(() => torch.saveSafetensors(file, {
          mu: torch.fromTypedArray(stats.mu, [stats.dim]),
          sigma: torch.fromTypedArray(stats.sigma, [stats.dim, stats.dim]),
          features: kidRows,
        }, { format: CACHE_FORMAT, count: String(stats.count), key: JSON.stringify({ ...parts, dir: path.resolve(spec.dir) }) }));
      } catch (e) {
        warn(`cannot cache the reference statistics in ${file} (${(e as Error).message}); they will be recomputed next time`);
      }
    }
    return { stats, features: kidRows.keep(), count: stats.count, key, file, fromCache: false };
  } finally {
    features.dispose();
  }
}

function readCacheFile(file: string, dim: number): { stats: FeatureStats; features: Tensor; count: number } {
  const meta = torch.safetensorsMetadata(file);
  if (meta.format !== CACHE_FORMAT) throw new Error(`metadata format is '${meta.format}', expected '${CACHE_FORMAT}'`);
  const count = Number(meta.count);
  const t = torch.loadSafetensors(file);
  try {
    const mu = t.get('mu');
    const sigma = t.get('sigma');
    const features = t.get('features');
    const shapeOk = mu?.dtype === 'float64' && mu.shape.join() === `${dim}` &&
      sigma?.dtype === 'float64' && sigma.shape.join() === `${dim},${dim}` &&
      features?.dtype === 'float32' && features.ndim === 2 && features.shape[1] === dim && features.shape[0] >= 2;
    if (!shapeOk || !Number.isInteger(count) || count < 2) {
      throw new Error(`expected mu [${dim}], sigma [${dim}, ${dim}] (float64), features [m, ${dim}] (float32) and a count`);
    }
    t.delete('features'); // handed to the caller
    return {
      stats: { mu: mu.data() as Float64Array, sigma: sigma.data() as Float64Array, count, dim },
      features: features.keep(),
      count,
    };
  } finally {
    for (const v of t.values()) v.dispose();
  }
}
