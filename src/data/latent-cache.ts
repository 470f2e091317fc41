// Latent caches: an image folder encoded once through the VAE (each image and its horizontal flip,
// as fast-DiT does), so latent-space training never runs the encoder again. The format is in
// latent-cache-manifest.ts. Encoding commits whole shards (shard file, then the manifest that
// counts it, both atomic), so a killed run resumes at its first missing shard; reading checks each
// shard's SHA-256 against the manifest first, so a damaged shard is named, never trained on.
import * as fs from 'fs';
import * as path from 'path';
import { decodeImageFiles } from '../eval/reference-stats';
import { AutoencoderKL } from '../models/vae';
import { loadVae, resolveVaeFiles } from '../models/vae-io';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { readSafetensorsHeader } from '../torch/io/safetensors';
import { BatchSource } from './batch-iterator';
import { sha256Bytes, sha256File } from './hash';
import { scanImageFolder } from './image-folder';
import {
  DEFAULT_LATENT_SHARD_SIZE, LATENT_CACHE_FORMAT, LATENT_CACHE_VERSION, LATENT_DTYPES, LATENT_MANIFEST_FILE, LATENT_SHARDS_DIR,
  LatentCacheManifest, LatentDType, latentShardName, readLatentManifest, writeLatentManifest,
} from './latent-cache-manifest';

export { isLatentCache, readLatentManifest } from './latent-cache-manifest';
export type { LatentCacheManifest } from './latent-cache-manifest';

/** The weights file of a VAE given as a folder or a file (what the cache's VAE hash is taken of). */
export function vaeWeightsFile(vaePath: string): string {
  if (!fs.existsSync(vaePath)) throw new Error(`${vaePath}: no such VAE file or folder`);
  return fs.statSync(vaePath).isDirectory() ? resolveVaeFiles(vaePath).weights : vaePath;
}

export interface EncodeLatentCacheOptions {
  /** The VAE: a diffusers folder or a weights file (see loadVae). */
  vae: string;
  /** A class-subfolder image folder. */
  input: string;
  /** The cache folder (new or empty, or a cache to resume). */
  out: string;
  /** Side the images are centre-cropped to before encoding (default 256). */
  resolution?: number;
  /** Images per encoder forward (each also encoded flipped; default 16). */
  batchSize?: number;
  shardSize?: number;
  dtype?: LatentDType;
  device?: Device;
  log?: (line: string) => void;
  /** After each committed shard: (items done, items). Throwing stops; committed shards stay. */
  onProgress?: (done: number, total: number) => void;
}

function now(): string {
  return new Date().toISOString();
}

/** Fields of a manifest that a resume must find unchanged. */
function identity(m: LatentCacheManifest): Record<string, unknown> {
  return {
    'source.itemsSha256': m.source.itemsSha256, 'vae.sha256': m.vae.sha256, resolution: m.resolution,
    shardSize: m.shardSize, dtype: m.dtype, latentShape: m.latentShape.join('x'),
  };
}

/** One shard's moments: [k, 2, C, h, w] mean and logvar of the scaled latent, in the cache dtype. */
function encodeShard(vae: AutoencoderKL, images: Tensor, batchSize: number, dtype: LatentDType, device: Device): { mean: Tensor; logvar: Tensor } {
  const sf = vae.config.scalingFactor;
  const shift = vae.config.shiftFactor ?? 0;
  const means: Tensor[] = [];
  const logvars: Tensor[] = [];
  try {
    for (let s = 0; s < images.shape[0]; s += batchSize) {
      const k = Math.min(batchSize, images.shape[0] - s);
      const [m, lv] = torch.noGrad(() => torch.scope(() => {
        const x = images.slice(0, s, s + k).to({ device, dtype: 'float32' }).div(127.5).sub(1);
        const dist = vae.encode(torch.cat([x, x.flip(3)], 0));
        try {
          // Model space: z = sf·(x − shift), so mean' = sf·(mean − shift) and logvar' = logvar + 2 ln sf.
          const pair = (t: Tensor): Tensor => torch.stack([t.slice(0, 0, k), t.slice(0, k, 2 * k)], 1).to({ device: 'cpu', dtype });
          return [pair(dist.mean.sub(shift).mul(sf)), pair(dist.logvar.add(2 * Math.log(sf)))];
        } finally {
          dist.dispose();
        }
      }));
      means.push(m);
      logvars.push(lv);
    }
    return torch.scope(() => ({ mean: torch.cat(means, 0), logvar: torch.cat(logvars, 0) }));
  } finally {
    for (const t of [...means, ...logvars]) t.dispose();
  }
}

/** Removes temp files a killed write left behind. */
function removeTempFiles(folder: string): void {
  for (const name of fs.readdirSync(folder)) if (/\.tmp-\d+$/.test(name)) fs.rmSync(path.join(folder, name), { force: true });
}

/**
 * Encodes (or resumes encoding) an image folder into a latent cache. A cache in `out` must have
 * been made from the same images, VAE file, resolution, shard size and dtype; a complete one is
 * left as it is.
 */
export async function encodeLatentCache(o: EncodeLatentCacheOptions): Promise<LatentCacheManifest> {
  const log = o.log ?? (() => undefined);
  const resolution = o.resolution ?? 256;
  const batchSize = o.batchSize ?? 16;
  const shardSize = o.shardSize ?? DEFAULT_LATENT_SHARD_SIZE;
  const dtype = o.dtype ?? 'float32';
  const device = o.device ?? 'cpu';
  for (const [name, v] of [['resolution', resolution], ['batchSize', batchSize], ['shardSize', shardSize]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`encodeLatentCache: ${name} must be a positive integer, got ${v}`);
  }
  if (!LATENT_DTYPES.includes(dtype)) throw new RangeError(`encodeLatentCache: dtype must be ${LATENT_DTYPES.join(' | ')}, got ${dtype}`);

  const index = scanImageFolder(o.input);
  const rel = index.items.map((it) => `${path.relative(o.input, it.file)}\t${it.label}`);
  const itemsSha256 = sha256Bytes(rel.join('\n'));
  const weights = vaeWeightsFile(o.vae);
  const vaeSha = sha256File(weights);
  const vae = loadVae(o.vae, { device, onWarning: (w) => log(`warning: ${w}`) });
  const f = vae.downsampleFactor;
  if (resolution % f) throw new Error(`encodeLatentCache: resolution ${resolution} is not a multiple of the VAE's downsampling factor ${f}`);
  const labels = index.items.map((it) => it.label);
  const classCounts = index.classes.map((_, c) => labels.filter((l) => l === c).length);
  const stamp = now();
  const fresh: LatentCacheManifest = {
    format: LATENT_CACHE_FORMAT, version: LATENT_CACHE_VERSION,
    source: { dir: path.resolve(o.input), items: labels.length, itemsSha256 },
    vae: { file: path.basename(weights), sha256: vaeSha, scalingFactor: vae.config.scalingFactor, shiftFactor: vae.config.shiftFactor, latentChannels: vae.config.latentChannels },
    resolution, latentShape: [vae.config.latentChannels, resolution / f, resolution / f], dtype, stores: 'moments', flips: 2,
    classes: index.classes, classCounts, labels, shardSize, count: 0, complete: false, shards: [], created: stamp, updated: stamp,
  };

  let manifest = fresh;
  if (fs.existsSync(path.join(o.out, LATENT_MANIFEST_FILE))) {
    const existing = readLatentManifest(o.out);
    const [a, b] = [identity(existing), identity(fresh)];
    const diffs = Object.keys(a).filter((k) => a[k] !== b[k]).map((k) => `${k} (cache: ${JSON.stringify(a[k])}, now: ${JSON.stringify(b[k])})`);
    if (diffs.length) {
      throw new Error(`${o.out}: this latent cache was made with other inputs: ${diffs.join(', ')}; ` +
        'use the same images, VAE and settings to resume it, or another --out');
    }
    for (const s of existing.shards) verifyShard(o.out, s);
    manifest = existing;
    if (manifest.complete) {
      log(`${o.out}: the latent cache is complete (${manifest.count} images); nothing to do`);
      return manifest;
    }
    log(`${o.out}: resuming at image ${manifest.count} of ${labels.length}`);
  } else if (fs.existsSync(o.out) && fs.readdirSync(o.out).length > 0) {
    throw new Error(`${o.out}: exists and is not a latent cache (no ${LATENT_MANIFEST_FILE}); give a new or empty folder as --out`);
  }
  fs.mkdirSync(path.join(o.out, LATENT_SHARDS_DIR), { recursive: true });
  removeTempFiles(path.join(o.out, LATENT_SHARDS_DIR));
  writeLatentManifest(o.out, manifest);

  const n = labels.length;
  for (let j = manifest.shards.length; j * shardSize < n; j++) {
    const start = j * shardSize;
    const end = Math.min(start + shardSize, n);
    const images = await decodeImageFiles(index.items.slice(start, end).map((it) => it.file), resolution);
    const file = latentShardName(j);
    try {
      const { mean, logvar } = encodeShard(vae, images, batchSize, dtype, device);
      const y = torch.tensor(labels.slice(start, end), { dtype: 'int64' });
      try {
        torch.saveSafetensors(path.join(o.out, file), { mean, logvar, labels: y }, { format: 'difftune-latent-shard', start: String(start) });
      } finally {
        for (const t of [mean, logvar, y]) t.dispose();
      }
    } finally {
      images.dispose();
    }
    manifest.shards.push({ file, start, count: end - start, sha256: sha256File(path.join(o.out, file)) });
    manifest.count = end;
    manifest.complete = end === n;
    manifest.updated = now();
    writeLatentManifest(o.out, manifest);
    o.onProgress?.(end, n);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return manifest;
}

/** Throws, naming the shard, when its file is missing or its SHA-256 is not the manifest's. */
function verifyShard(dir: string, s: LatentCacheManifest['shards'][number]): void {
  const file = path.join(dir, s.file);
  if (!fs.existsSync(file)) throw new Error(`${file}: latent shard missing (the manifest counts ${s.count} items in it)`);
  const actual = sha256File(file);
  if (actual !== s.sha256) {
    throw new Error(`${file}: latent shard is corrupted: sha256 ${actual} differs from the manifest's ${s.sha256} ` +
      '(delete the cache and encode again)');
  }
}

interface ShardReader { fd: number; file: string; start: number; count: number; mean: number; logvar: number }

export interface OpenLatentCacheOptions {
  /** Check every shard's SHA-256 before use (default true). */
  verify?: boolean;
  /** The VAE file hash the cache must have been made with (e.g. the run's --vae). */
  vaeSha256?: string;
  /**
   * 'sample' (default): each use draws z = mean + std·ε from torch's global generator (part of a
   * training checkpoint's state, so a resumed run draws the same); 'mean': the posterior mean.
   */
  draw?: 'sample' | 'mean';
}

/**
 * A complete latent cache as a training data source. batch(indices, flip) returns float32 latents
 * [n, C, h, w]: flip[i] picks the stored flipped image (never a flipped latent) and labels int64 [n].
 * Items are read from the shard files on demand (positional reads), so a cache larger than memory
 * trains as well as a small one.
 */
export class LatentCacheDataset implements BatchSource {
  readonly classes: string[];
  readonly latentShape: number[];
  private readonly readers: ShardReader[];
  private readonly itemBytes: number;
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly manifest: LatentCacheManifest,
    /** Cache item of each dataset position (a subset's view). */
    private readonly items: Uint32Array,
    readers: ShardReader[],
    private readonly draw: 'sample' | 'mean',
  ) {
    this.classes = manifest.classes;
    this.latentShape = manifest.latentShape;
    this.readers = readers;
    this.itemBytes = manifest.latentShape.reduce((a, b) => a * b, 1) * (manifest.dtype === 'float32' ? 4 : 2);
  }

  static open(dir: string, o: OpenLatentCacheOptions = {}): LatentCacheDataset {
    const m = readLatentManifest(dir);
    const file = path.join(dir, LATENT_MANIFEST_FILE);
    if (!m.complete || m.count !== m.source.items) {
      throw new Error(`${dir}: the latent cache is incomplete (${m.count} of ${m.source.items} images); run \`difftune datasets encode\` again with the same settings to finish it`);
    }
    if (o.vaeSha256 !== undefined && o.vaeSha256 !== m.vae.sha256) {
      throw new Error(`${file}: the cache was encoded with another VAE (${m.vae.file}, sha256 ${m.vae.sha256}), ` +
        `not the given one (sha256 ${o.vaeSha256}); encode the images again with this VAE`);
    }
    const expected = [2, ...m.latentShape];
    const readers = m.shards.map((s) => {
      if (o.verify ?? true) verifyShard(dir, s);
      const shardFile = path.join(dir, s.file);
      const h = readSafetensorsHeader(shardFile);
      const entry = (name: string): number => {
        const e = h.tensors.get(name);
        if (!e || e.dtype !== m.dtype || e.shape.join() !== [s.count, ...expected].join()) {
          throw new Error(`${shardFile}: expected '${name}' ${m.dtype} [${[s.count, ...expected].join(', ')}], found ${e ? `${e.dtype} [${e.shape.join(', ')}]` : 'none'}`);
        }
        return h.dataStart + e.begin;
      };
      return { fd: -1, file: shardFile, start: s.start, count: s.count, mean: entry('mean'), logvar: entry('logvar') };
    });
    return new LatentCacheDataset(dir, m, Uint32Array.from({ length: m.count }, (_, i) => i), readers, o.draw ?? 'sample');
  }

  get length(): number {
    return this.items.length;
  }

  /** The label of each dataset position. */
  get labels(): number[] {
    return Array.from(this.items, (i) => this.manifest.labels[i]);
  }

  /** A view of the given positions (shares the shard files). */
  subset(indices: number[]): LatentCacheDataset {
    for (const i of indices) if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`LatentCacheDataset.subset: index ${i} is outside 0..${this.length - 1}`);
    return new LatentCacheDataset(this.dir, this.manifest, Uint32Array.from(indices, (i) => this.items[i]), this.readers, this.draw);
  }

  /** The stored moments of positions [n]: mean and logvar float32 [n, C, h, w], flipped copies where flip[i]. */
  moments(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { mean: Tensor; logvar: Tensor } {
    if (this.closed) throw new Error(`${this.dir}: the latent cache was closed`);
    const n = indices.length;
    if (n === 0) throw new RangeError('LatentCacheDataset: no indices given');
    if (flip !== undefined && flip.length !== n) throw new RangeError(`LatentCacheDataset: flip has ${flip.length} entries for ${n} indices`);
    const bytes = { mean: new Uint8Array(n * this.itemBytes), logvar: new Uint8Array(n * this.itemBytes) };
    for (let k = 0; k < n; k++) {
      const pos = indices[k];
      if (!Number.isInteger(pos) || pos < 0 || pos >= this.length) throw new RangeError(`LatentCacheDataset: index ${pos} is outside 0..${this.length - 1}`);
      const item = this.items[pos];
      const r = this.shardOf(item);
      const slot = (item - r.start) * 2 + (flip?.[k] ? 1 : 0);
      for (const key of ['mean', 'logvar'] as const) {
        const got = fs.readSync(r.fd, bytes[key], k * this.itemBytes, this.itemBytes, r[key] + slot * this.itemBytes);
        if (got !== this.itemBytes) throw new Error(`${r.file}: short read of item ${item} (the file is truncated)`);
      }
    }
    const shape = [n, ...this.latentShape];
    const dtype = this.manifest.dtype;
    const toTensor = (b: Uint8Array): Tensor => torch.scope(() => {
      const t = dtype === 'float32' ? torch.fromTypedArray(new Float32Array(b.buffer), shape) : torch.fromTypedArray(new Uint16Array(b.buffer), shape, { dtype });
      return t.float();
    });
    return { mean: toTensor(bytes.mean), logvar: toTensor(bytes.logvar) };
  }

  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: Tensor; y: Tensor } {
    const { mean, logvar } = this.moments(indices, flip);
    const y = torch.tensor(Array.from(indices as ArrayLike<number>, (i) => this.manifest.labels[this.items[i]]), { dtype: 'int64' });
    if (this.draw === 'mean') {
      logvar.dispose();
      return { x: mean, y };
    }
    try {
      return { x: torch.scope(() => mean.add(logvar.mul(0.5).exp().mul(torch.randnLike(mean)))), y };
    } finally {
      mean.dispose();
      logvar.dispose();
    }
  }

  /** Closes the shard files (shared with subset views: dispose the last one in use). */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.readers) {
      if (r.fd >= 0) fs.closeSync(r.fd);
      r.fd = -1;
      openShards.delete(r);
    }
  }

  private shardOf(item: number): ShardReader {
    const size = this.manifest.shardSize;
    const r = this.readers[Math.floor(item / size)];
    if (r.fd < 0) {
      // Few files stay open (ImageNet has over a thousand shards; the usual limit is 1024 descriptors).
      if (openShards.size >= MAX_OPEN_SHARDS) {
        const oldest = openShards.values().next().value as ShardReader;
        fs.closeSync(oldest.fd);
        oldest.fd = -1;
        openShards.delete(oldest);
      }
      r.fd = fs.openSync(r.file, 'r');
    }
    openShards.delete(r); // most recently used last
    openShards.add(r);
    return r;
  }
}

const MAX_OPEN_SHARDS = 64;
/** Open shard files of every cache, least recently used first. */
const openShards = new Set<ShardReader>();
