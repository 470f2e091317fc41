// A latent cache's on-disk format: the manifest (what was encoded, with which VAE, which shards are
// complete and their hashes) and where each shard lives. Encoding is in latent-cache.ts.
//
//   DIR/latents.json                       this LatentCacheManifest, rewritten atomically after each shard
//   DIR/shards/shard-000000.safetensors    items [j*shardSize, (j+1)*shardSize): mean and logvar
//                                          [k, 2, C, h, w] (axis 1: the image, then its horizontal
//                                          flip), labels int64 [k]
//
// What is stored: the VAE posterior's moments, not one sample (fast-DiT stores one sample per
// image). mean and logvar are those of the *model-space* latent z = scalingFactor · (x − shift),
// so a training batch draws z = mean + exp(logvar / 2) · ε afresh every time an item is used,
// exactly what re-encoding the image each step (the official DiT training loop) would give.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../tuning/write-atomic';

export const LATENT_CACHE_FORMAT = 'difftune-latent-cache';
export const LATENT_CACHE_VERSION = 1;
export const LATENT_MANIFEST_FILE = 'latents.json';
export const LATENT_SHARDS_DIR = 'shards';
/** Items per shard when not given (2 · 2 · 4·32·32 float32 = 64 KiB per 256px item: 64 MiB shards). */
export const DEFAULT_LATENT_SHARD_SIZE = 1000;
export const LATENT_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type LatentDType = (typeof LATENT_DTYPES)[number];

export interface LatentShardRecord {
  /** Path relative to the cache folder. */
  file: string;
  start: number;
  count: number;
  /** Hex SHA-256 of the shard file: checked before a shard is read. */
  sha256: string;
}

export interface LatentCacheManifest {
  format: typeof LATENT_CACHE_FORMAT;
  version: number;
  /** The image folder, its item count and a hash of its file list and labels (a resume must see the same images). */
  source: { dir: string; items: number; itemsSha256: string };
  vae: { file: string; sha256: string; scalingFactor: number; shiftFactor: number | null; latentChannels: number };
  /** Side of the (centre-cropped) images that were encoded. */
  resolution: number;
  /** [C, h, w] of one latent. */
  latentShape: number[];
  dtype: LatentDType;
  stores: 'moments';
  /** Axis 1 of mean/logvar: 0 the image, 1 its horizontal flip. */
  flips: 2;
  classes: string[];
  classCounts: number[];
  /** Label of every item, in item order (torchvision ImageFolder order). */
  labels: number[];
  shardSize: number;
  /** Items in complete shards. */
  count: number;
  complete: boolean;
  shards: LatentShardRecord[];
  created: string;
  updated: string;
}

export function latentShardName(j: number): string {
  return path.join(LATENT_SHARDS_DIR, `shard-${String(j).padStart(6, '0')}.safetensors`);
}

/** Whether dir holds a latent cache (its manifest). */
export function isLatentCache(dir: string): boolean {
  return fs.existsSync(path.join(dir, LATENT_MANIFEST_FILE));
}

function fail(file: string, field: string, expected: string, value: unknown): never {
  throw new Error(`${file}: '${field}' must be ${expected}, got ${JSON.stringify(value)}`);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Reads and validates DIR/latents.json; every error names the file and the field. */
export function readLatentManifest(dir: string): LatentCacheManifest {
  const file = path.join(dir, LATENT_MANIFEST_FILE);
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the latent cache manifest (${(e as Error).message})`);
  }
  if (typeof m !== 'object' || m === null) fail(file, '', 'an object', m);
  if (m.format !== LATENT_CACHE_FORMAT) fail(file, 'format', `"${LATENT_CACHE_FORMAT}"`, m.format);
  if (m.version !== LATENT_CACHE_VERSION) fail(file, 'version', String(LATENT_CACHE_VERSION), m.version);
  if (!LATENT_DTYPES.includes(m.dtype as LatentDType)) fail(file, 'dtype', LATENT_DTYPES.join(' | '), m.dtype);
  if (m.stores !== 'moments' || m.flips !== 2) fail(file, 'stores/flips', '"moments" and 2', [m.stores, m.flips]);
  for (const k of ['resolution', 'shardSize'] as const) if (!isCount(m[k]) || m[k] === 0) fail(file, k, 'a positive integer', m[k]);
  if (!isCount(m.count)) fail(file, 'count', 'an integer >= 0', m.count);
  const shape = m.latentShape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => isCount(d) && d > 0)) fail(file, 'latentShape', '[C, h, w]', shape);
  const vae = m.vae as LatentCacheManifest['vae'];
  if (typeof vae !== 'object' || vae === null || typeof vae.sha256 !== 'string' || !(vae.scalingFactor > 0)) {
    fail(file, 'vae', '{file, sha256, scalingFactor, shiftFactor, latentChannels}', vae);
  }
  const classes = m.classes;
  if (!Array.isArray(classes) || classes.length === 0 || !classes.every((c) => typeof c === 'string')) fail(file, 'classes', 'a list of class names', classes);
  const source = m.source as LatentCacheManifest['source'];
  if (typeof source !== 'object' || source === null || !isCount(source.items) || typeof source.itemsSha256 !== 'string') {
    fail(file, 'source', '{dir, items, itemsSha256}', source);
  }
  const labels = m.labels;
  if (!Array.isArray(labels) || labels.length !== source.items || !labels.every((l) => isCount(l) && l < classes.length)) {
    fail(file, 'labels', `${source.items} labels in 0..${classes.length - 1}`, Array.isArray(labels) ? `${labels.length} entries` : labels);
  }
  const shards = m.shards;
  if (!Array.isArray(shards)) fail(file, 'shards', 'a list', shards);
  let next = 0;
  (shards as LatentShardRecord[]).forEach((s, j) => {
    const ok = typeof s === 'object' && s !== null && s.file === latentShardName(j) && s.start === next && isCount(s.count) && s.count > 0
      && typeof s.sha256 === 'string' && /^[0-9a-f]{64}$/.test(s.sha256);
    if (!ok) fail(file, `shards[${j}]`, `{file: "${latentShardName(j)}", start: ${next}, count > 0, sha256}`, s);
    next += s.count;
  });
  if (next !== m.count) fail(file, 'count', `the shards' total ${next}`, m.count);
  if (m.count as number > source.items) fail(file, 'count', `at most source.items ${source.items}`, m.count);
  return m as unknown as LatentCacheManifest;
}

export function writeLatentManifest(dir: string, m: LatentCacheManifest): void {
  // Labels on one line: a manifest of a million items stays a few megabytes and readable.
  const { labels, ...rest } = m;
  const text = JSON.stringify(rest, null, 1).replace(/\n}$/, `,\n "labels": ${JSON.stringify(labels)}\n}`);
  writeFileAtomic(path.join(dir, LATENT_MANIFEST_FILE), `${text}\n`);
}
