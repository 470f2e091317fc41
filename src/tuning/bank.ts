// The knowledge bank (Diff-Tuning's replay set X̂s): samples of the frozen pretrained model,
// built once, resumable, and checked by the trainer through its manifest (bank-manifest.ts).
//
// Determinism: item i depends only on (seed, i) and the settings. Its starting noise and every
// ancestral-step noise come from its own CPU generator seeded with itemSeed(seed, i), and its
// label from bankLabels; so an interrupted build that is resumed writes the same bytes as an
// uninterrupted one (batches start at the same indices), and the noise does not depend on the
// device. Only complete batches are committed: files first, then the manifest's count.
import * as fs from 'fs';
import * as path from 'path';
import { cfgBatch, conditionalHalf } from '../diffusion/cfg';
import { createDiffusion } from '../diffusion/create';
import { SpacedDiffusion } from '../diffusion/spaced-diffusion';
import { sha256Bytes, sha256File } from '../data/hash';
import { mulberry32 } from '../data/prng';
import { DiT, DiTConfig, modelArgs } from '../models/dit';
import { loadDiT } from '../models/dit-io';
import { decodeLatentImages } from '../data/latent-images';
import { AutoencoderKL } from '../models/vae';
import { encodePng } from '../report/png';
import { quantizeImages } from '../report/quantize';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { readSafetensorsHeader } from '../torch/io/safetensors';
import {
  BankManifest, BankRecordedSettings, BankSettings, BankStorage, BANK_FORMAT, BANK_VERSION, bankImagePath, bankShardPath,
  IMAGES_DIR, MANIFEST_FILE, readBankManifest, recordedSettings, SettingDifference, settingDifferences, SHARDS_DIR,
  shardRange, validateBankSettings, writeBankManifest,
} from './bank-manifest';

export type { BankManifest, BankSettings, BankRecordedSettings, BankStorage } from './bank-manifest';
export { readBankManifest } from './bank-manifest';

// ---------------------------------------------------------------------------------------------
// Seeds and labels of item i
// ---------------------------------------------------------------------------------------------

/** A 32-bit number from a string (the first 4 bytes of its SHA-256). */
function hash32(text: string): number {
  return parseInt(sha256Bytes(text).slice(0, 8), 16);
}

/**
 * The seed of item i's generator: (h + i) mod 2^32 with h = first 4 bytes of
 * sha256("difftune-bank/<seed>"). 32 bits because libtorch's CPU generator (mt19937) keeps only
 * the low 32 bits of a seed; consecutive offsets keep every item of a bank (< 2^32 items) distinct.
 */
export function itemSeed(seed: number, i: number): number {
  return (hash32(`difftune-bank/${seed}`) + i) % 2 ** 32;
}

/**
 * Labels of items [start, end). Unconditional: the null label (numClasses). Uniform: items are
 * taken in blocks of numClasses, and block b is a random permutation of all classes (seeded by
 * (seed, b)). Unlike i mod K the classes of any prefix are a uniform random spread (a bank smaller
 * than K is not just classes 0..n-1), and unlike independent draws (DiT's sample_ddp.py) the
 * counts are exactly balanced: every class occurs floor(n/K) or ceil(n/K) times.
 */
export function bankLabels(s: Pick<BankRecordedSettings, 'labels' | 'numClasses' | 'seed'>, start: number, end: number): number[] {
  const k = s.numClasses;
  if (s.labels === 'unconditional') return new Array<number>(end - start).fill(k);
  const perms = new Map<number, Int32Array>();
  const permutation = (block: number): Int32Array => {
    let p = perms.get(block);
    if (!p) {
      p = Int32Array.from({ length: k }, (_, c) => c);
      const rand = mulberry32(hash32(`difftune-bank-labels/${s.seed}/${block}`));
      for (let a = k - 1; a > 0; a--) {
        const b = Math.floor(rand() * (a + 1));
        [p[a], p[b]] = [p[b], p[a]];
      }
      perms.set(block, p);
    }
    return p;
  };
  const out: number[] = [];
  for (let i = start; i < end; i++) out.push(permutation(Math.floor(i / k))[i % k]);
  return out;
}

/** One draw per item from each item's own generator: [items, ...itemShape] float32 on CPU. */
class ItemNoise {
  private readonly generators: torch.Generator[];
  constructor(seed: number, start: number, end: number, private readonly itemShape: readonly number[]) {
    this.generators = Array.from({ length: end - start }, (_, k) => new torch.Generator('cpu', itemSeed(seed, start + k)));
  }
  next(device: Device): Tensor {
    return torch.scope(() => {
      const x = torch.cat(this.generators.map((g) => torch.randn([1, ...this.itemShape], { generator: g })), 0);
      return device === 'cpu' ? x : x.to({ device });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Sampling a DiT (shared with `difftune sample`)
// ---------------------------------------------------------------------------------------------

export interface DiTSampleOptions {
  /** [B] int64 class labels on the model's device (numClasses is the null label). */
  labels: Tensor;
  /** x_T, [B, C, H, W] on the model's device. */
  noise: Tensor;
  /** The Gaussian noise of loop step `step` for the B items; default torch.randnLike (the global generator). */
  stepNoise?: (step: number) => Tensor;
  /** Guidance scale; 1 runs the plain conditional model. */
  cfg: number;
  guideChannels: 3 | 'all' | number;
  sampler: 'ddpm' | 'ddim';
  /** DDIM eta. */
  eta?: number;
  /** Clamp predicted x_0 to [-1, 1]. */
  clip: boolean;
  device?: Device;
  /** 'bf16' runs the model under bf16 autocast (the sampler's own math stays float32); default fp32. */
  precision?: torch.Precision;
  /** Called after each step with (steps done, total). */
  progress?: (done: number, total: number) => void;
}

/**
 * Samples B items from a DiT in eval mode: sample.py's loop (the [cond; null] CFG batch and
 * forward_with_cfg when cfg != 1, DDPM or DDIM), returning x_0 [B, C, H, W].
 */
export function sampleDiT(model: DiT, diffusion: SpacedDiffusion, o: DiTSampleOptions): Tensor {
  const useCfg = o.cfg !== 1;
  return torch.noGrad(() => torch.scope(() => {
    const batch = useCfg ? cfgBatch(o.noise, o.labels, model.config.numClasses) : { x: o.noise, y: o.labels };
    const forward = useCfg
      ? (x: Tensor, t: Tensor, k: { y: Tensor }) => model.forwardWithCfg(x, t, k.y, o.cfg, { guideChannels: o.guideChannels })
      : (x: Tensor, t: Tensor, k: { y: Tensor }) => model.forward(x, t, k.y);
    const modelFn = torch.modelInPrecision(o.precision ?? 'fp32', o.device ?? o.noise.device, forward);
    // The CFG batch's second half only feeds the unconditional branch; it gets the same noise.
    const noiseFn = o.stepNoise
      ? (step: number) => { const n = o.stepNoise!(step); return useCfg ? torch.cat([n, n], 0) : n; }
      : undefined;
    const opts = { noise: batch.x, modelKwargs: { y: batch.y }, clipDenoised: o.clip, device: o.device, noiseFn, progress: o.progress };
    const out = o.sampler === 'ddim'
      ? diffusion.ddimSampleLoop(modelFn, batch.x.shape, { ...opts, eta: o.eta ?? 0 })
      : diffusion.pSampleLoop(modelFn, batch.x.shape, opts);
    return useCfg ? conditionalHalf(out) : out;
  }));
}

/** [N, C, H, W] in [-1, 1] -> interleaved uint8 [N, H, W, C] bytes (torchvision save_image's rounding). */
export function imagesToUint8(x: Tensor): Uint8Array {
  return torch.noGrad(() => torch.scope(() =>
    quantizeImages(x).permute(0, 2, 3, 1).contiguous().bytes()));
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

export interface BuildBankOptions {
  /** The pretrained weights (any file loadDiT reads; training checkpoints give their EMA). */
  modelFile: string;
  /** The model config; default X.json or config.json beside the weights. */
  configFile?: string;
  /** Load unsupported pickle globals of a .pt as placeholders (with warnings) instead of refusing it. */
  skipUnknown?: boolean;
  /** The architecture itself (e.g. a named official model for a .pt without config); wins over configFile. */
  config?: DiTConfig;
  /** The bank folder (created; an existing bank is resumed). */
  out: string;
  settings: BankSettings;
  device?: Device;
  /** Delete an existing bank in `out` (its manifest, images/ and shards/) and start over. */
  force?: boolean;
  /** Once the model is loaded and sampling starts: (items already complete, n). */
  onStart?: (done: number, total: number) => void;
  /** After each committed batch: (items complete, n). Throwing stops the build; what is committed stays. */
  onProgress?: (done: number, total: number) => void;
  /** After each sampling step of the current batch: (steps done, steps). */
  onStep?: (done: number, total: number) => void;
  /** Notes worth showing a user (resuming, growing, already complete, loader warnings). */
  log?: (line: string) => void;
}

function describeDifferences(diffs: SettingDifference[]): string {
  return diffs.map((d) => `${d.field} (bank: ${JSON.stringify(d.bank)}, now: ${JSON.stringify(d.requested)})`).join(', ');
}

/** Removes what a bank consists of, and nothing else in the folder. */
function removeBank(dir: string): void {
  for (const sub of [IMAGES_DIR, SHARDS_DIR]) fs.rmSync(path.join(dir, sub), { recursive: true, force: true });
  fs.rmSync(path.join(dir, MANIFEST_FILE), { force: true });
}

/** Our manifest's format field, read leniently (so --force can replace a damaged bank of ours). */
function isOurManifest(file: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { format?: unknown }).format === BANK_FORMAT;
  } catch {
    return false;
  }
}

/** The existing bank in dir (null for a new one), after --force and emptiness checks. */
function openBankDir(dir: string, force: boolean, log: (line: string) => void): BankManifest | null {
  const manifestFile = path.join(dir, MANIFEST_FILE);
  if (fs.existsSync(manifestFile)) {
    if (!force) return readBankManifest(dir);
    if (!isOurManifest(manifestFile)) throw new Error(`${manifestFile}: not a difftune bank manifest; --force only replaces a bank, pick another --out`);
    log(`--force: deleting the bank in ${dir}`);
    removeBank(dir);
    return null;
  }
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    throw new Error(`${dir}: exists and is not a difftune bank (no ${MANIFEST_FILE}); give a new or empty folder as --out`);
  }
  return null;
}

/** Leftovers of writes that a killed build did not finish. */
function removeTempFiles(folder: string): void {
  for (const name of fs.readdirSync(folder)) if (/\.tmp-\d+$/.test(name)) fs.rmSync(path.join(folder, name), { force: true });
}

/** Temp file, fsync, rename: the manifest (fsynced after) never counts an image the disk does not hold. */
function writeFileAtomic(file: string, data: Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Latent items not yet in a full shard: the growing last shard, rewritten after each batch. */
class ShardWriter {
  private x: Tensor | null = null;
  private y: Tensor | null = null;
  constructor(private readonly dir: string, private readonly shardSize: number, count: number, itemShape: readonly number[]) {
    // Resume a partly filled shard from its file.
    const j = Math.floor(count / shardSize);
    const have = count - j * shardSize;
    if (have > 0) {
      const shard = loadShard(dir, j, have, itemShape, true);
      this.x = shard.x.keep();
      this.y = shard.y.keep();
    }
  }

  /** Appends items [start, start + x.shape[0]) and rewrites every shard they touch. */
  append(start: number, x: Tensor, y: Tensor): void {
    const b = x.shape[0];
    for (let off = 0; off < b;) {
      const i = start + off;
      const j = Math.floor(i / this.shardSize);
      const take = Math.min(b - off, (j + 1) * this.shardSize - i);
      const [nx, ny] = [x, y].map((t, k) => {
        const part = t.slice(0, off, off + take);
        const prev = k === 0 ? this.x : this.y;
        // Kept: the growing shard outlives the caller's scope.
        const next = (prev ? torch.cat([prev, part], 0) : part.clone()).keep();
        part.dispose();
        prev?.dispose();
        return next;
      });
      this.x = nx;
      this.y = ny;
      torch.saveSafetensors(bankShardPath(this.dir, j), { x: nx, y: ny }, { format: 'difftune-bank-shard', start: String(j * this.shardSize) });
      if (i + take === (j + 1) * this.shardSize) this.dispose();
      off += take;
    }
  }

  dispose(): void {
    this.x?.dispose();
    this.y?.dispose();
    this.x = this.y = null;
  }
}

function now(): string {
  return new Date().toISOString();
}

/**
 * Samples (or finishes, or grows) the bank in o.out. An existing bank must have been built from
 * the same model file (SHA-256) with the same settings, except that a larger n grows it (items
 * already there keep their content); a complete one is left as it is.
 */
export async function buildBank(o: BuildBankOptions): Promise<BankManifest> {
  const s = validateBankSettings(o.settings);
  const device = o.device ?? 'cpu';
  const log = o.log ?? (() => undefined);
  const dir = o.out;
  const sha256 = sha256File(o.modelFile);
  const existing = openBankDir(dir, o.force ?? false, log);

  if (existing) {
    const diffs: SettingDifference[] = [];
    if (existing.model.sha256 !== sha256) diffs.push({ field: 'model.sha256', bank: existing.model.sha256, requested: sha256 });
    const requested = recordedSettings(
      { ...s, shardSize: s.shardSize ?? existing.settings.shardSize }, existing.settings.numClasses, existing.storage);
    diffs.push(...settingDifferences(existing.settings, requested, ['numClasses', 'n']));
    if (s.n < existing.settings.n) diffs.push({ field: 'n', bank: existing.settings.n, requested: s.n });
    if (diffs.length) {
      throw new Error(`${dir}: this bank was built with other settings: ${describeDifferences(diffs)}. ` +
        'Use the same settings to resume it, --force to delete it and start over, or another --out');
    }
    if (existing.count === s.n && existing.settings.n === s.n) {
      log(`${dir}: the bank is complete (${s.n} items); nothing to do`);
      return existing;
    }
  }

  const { model, warnings } = loadDiT(o.modelFile, { config: o.config, configFile: o.configFile, device, skipUnknown: o.skipUnknown });
  for (const w of warnings) log(`warning: ${w}`);
  model.eval();
  const c = model.config;
  const storage: BankStorage = c.inChannels === 1 || c.inChannels === 3 ? 'png' : 'latents';
  const config = modelArgs(c);
  if (existing) {
    const differs = JSON.stringify(existing.model.config) !== JSON.stringify(config) || existing.storage !== storage;
    if (differs) {
      throw new Error(`${dir}: this bank was built with another model config (model.config: bank ${JSON.stringify(existing.model.config)}, ` +
        `now ${JSON.stringify(config)}); pass the same --config, or --force to start over`);
    }
  }
  if ((s.labels === 'unconditional' || s.cfg !== 1) && c.classDropoutProb === 0) {
    throw new Error(`${o.modelFile}: the model has no null label (class_dropout_prob 0), so it cannot sample ` +
      `${s.labels === 'unconditional' ? 'unconditionally' : 'with guidance'}; use labels 'uniform' and cfg 1`);
  }

  const settings = recordedSettings({ ...s, shardSize: s.shardSize ?? existing?.settings.shardSize }, c.numClasses, storage);
  const stamp = now();
  const manifest: BankManifest = existing
    ? { ...existing, model: { ...existing.model, file: path.basename(o.modelFile) }, settings, updated: stamp }
    : {
      format: BANK_FORMAT, version: BANK_VERSION, storage, count: 0,
      model: { file: path.basename(o.modelFile), sha256, config }, settings, created: stamp, updated: stamp,
    };
  if (existing && existing.settings.n < s.n) log(`${dir}: growing the bank from ${existing.settings.n} to ${s.n} items`);
  else if (existing) log(`${dir}: resuming at item ${existing.count} of ${s.n}`);
  fs.mkdirSync(path.join(dir, storage === 'png' ? IMAGES_DIR : SHARDS_DIR), { recursive: true });
  removeTempFiles(path.join(dir, storage === 'png' ? IMAGES_DIR : SHARDS_DIR));
  writeBankManifest(dir, manifest);

  const diffusion = createDiffusion({ timestepRespacing: String(s.steps), learnSigma: c.learnSigma });
  const itemShape = [c.inChannels, c.inputSize, c.inputSize];
  const shards = storage === 'latents' ? new ShardWriter(dir, settings.shardSize!, manifest.count, itemShape) : null;
  // DDIM with eta 0 never uses step noise; zeros skip the draws.
  const needsStepNoise = s.sampler === 'ddpm' || s.eta !== 0;
  o.onStart?.(manifest.count, s.n);
  try {
    for (let start = manifest.count; start < s.n;) {
      const end = Math.min(start + s.batchSize, s.n);
      const labels = bankLabels(settings, start, end);
      const x = torch.scope(() => {
        const noise = new ItemNoise(s.seed, start, end, itemShape);
        const xT = noise.next(device);
        return sampleDiT(model, diffusion, {
          labels: torch.tensor(labels, { dtype: 'int64', device }), noise: xT,
          stepNoise: (step) => needsStepNoise ? noise.next(device) : torch.zerosLike(xT),
          cfg: s.cfg, guideChannels: s.guideChannels, sampler: s.sampler, eta: s.eta, clip: s.clip, device, precision: s.precision,
          progress: o.onStep,
        }).to({ device: 'cpu', dtype: 'float32' });
      });
      try {
        if (storage === 'png') writeImages(dir, start, x);
        else torch.scope(() => shards!.append(start, x, torch.tensor(labels, { dtype: 'int64' })));
      } finally {
        x.dispose();
      }
      manifest.count = end;
      manifest.updated = now();
      writeBankManifest(dir, manifest);
      start = end;
      o.onProgress?.(end, s.n);
      // Let signals and output through between batches.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    shards?.dispose();
  }
  return manifest;
}

function writeImages(dir: string, start: number, x: Tensor, pathOf: (dir: string, i: number) => string = bankImagePath): void {
  const [b, ch, h, w] = x.shape;
  const bytes = imagesToUint8(x);
  const size = h * w * ch;
  for (let k = 0; k < b; k++) {
    writeFileAtomic(pathOf(dir, start + k), encodePng(bytes.subarray(k * size, (k + 1) * size), w, h, ch as 1 | 3));
  }
}

/** Decoded previews of a latent bank: DIR/decoded/000000.png ... (for viewing only; training reads the shards). */
export const DECODED_DIR = 'decoded';

export function bankDecodedPath(dir: string, i: number): string {
  return path.join(dir, DECODED_DIR, `${String(i).padStart(6, '0')}.png`);
}

/**
 * Writes a PNG for every complete item of a latent bank that has none yet, decoded through the
 * VAE (so it can run after each build, and after an interrupted one). Returns the number written.
 */
export function writeDecodedBank(dir: string, vae: AutoencoderKL, o: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}): number {
  const { x, y } = loadBankLatents(dir);
  y.dispose();
  try {
    if (x.shape[1] !== vae.config.latentChannels) {
      throw new Error(`${dir}: the bank holds ${x.shape[1]}-channel latents but the VAE decodes ${vae.config.latentChannels}-channel ones`);
    }
    fs.mkdirSync(path.join(dir, DECODED_DIR), { recursive: true });
    removeTempFiles(path.join(dir, DECODED_DIR));
    const missing = Array.from({ length: x.shape[0] }, (_, i) => i).filter((i) => !fs.existsSync(bankDecodedPath(dir, i)));
    const batch = o.batchSize ?? 8;
    for (let s = 0; s < missing.length; s += batch) {
      const part = missing.slice(s, s + batch);
      torch.scope(() => {
        const images = decodeLatentImages(vae, x.indexSelect(0, torch.tensor(part, { dtype: 'int64' })), batch);
        // Items of a batch may not be consecutive: write each on its own.
        part.forEach((i, k) => writeImages(dir, i, images.slice(0, k, k + 1), bankDecodedPath));
      });
      o.onProgress?.(Math.min(s + batch, missing.length), missing.length);
    }
    return missing.length;
  } finally {
    x.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading and checking
// ---------------------------------------------------------------------------------------------

function itemShapeOf(m: BankManifest, file: string): number[] {
  const size = m.model.config.input_size;
  const ch = m.model.config.in_channels;
  if (typeof size !== 'number' || typeof ch !== 'number') throw new Error(`${file}: 'model.config' lacks input_size / in_channels`);
  return [ch, size, size];
}

/**
 * Shard j's first `items` items. A shard may hold more than asked only when allowExtra (the last
 * shard of a build stopped between writing it and writing the manifest).
 */
function loadShard(dir: string, j: number, items: number, itemShape: readonly number[], allowExtra: boolean): { x: Tensor; y: Tensor } {
  const file = bankShardPath(dir, j);
  if (!fs.existsSync(file)) throw new Error(`${file}: missing (the manifest counts items in it)`);
  const header = readSafetensorsHeader(file);
  const x = header.tensors.get('x');
  const y = header.tensors.get('y');
  if (!x || !y) throw new Error(`${file}: expected tensors 'x' and 'y', found ${[...header.tensors.keys()].join(', ') || 'none'}`);
  const k = x.shape[0];
  const shapeOk = x.dtype === 'float32' && x.shape.length === 4 && x.shape.slice(1).every((d, a) => d === itemShape[a])
    && y.dtype === 'int64' && y.shape.length === 1 && y.shape[0] === k && (allowExtra ? k >= items : k === items);
  if (!shapeOk) {
    throw new Error(`${file}: expected x float32 [${items}, ${itemShape.join(', ')}] and y int64 [${items}], ` +
      `found x ${x.dtype} [${x.shape.join(', ')}] and y ${y.dtype} [${y.shape.join(', ')}]`);
  }
  const t = torch.loadSafetensors(file);
  const [tx, ty] = [t.get('x')!, t.get('y')!];
  if (k === items) return { x: tx, y: ty };
  const out = { x: tx.slice(0, 0, items).clone(), y: ty.slice(0, 0, items).clone() };
  tx.dispose();
  ty.dispose();
  return out;
}

/** A latent bank's complete items: x float32 [count, C, H, W], y int64 [count] (on CPU). */
export function loadBankLatents(dir: string): { x: Tensor; y: Tensor } {
  const m = readBankManifest(dir);
  const file = path.join(dir, MANIFEST_FILE);
  if (m.storage !== 'latents') throw new Error(`${file}: storage is '${m.storage}'; its items are image files in ${path.join(dir, IMAGES_DIR)}`);
  if (m.count === 0) throw new Error(`${file}: the bank has no complete items yet`);
  const itemShape = itemShapeOf(m, file);
  const size = m.settings.shardSize!;
  const xs: Tensor[] = [];
  const ys: Tensor[] = [];
  try {
    for (let j = 0; j * size < m.count; j++) {
      const r = shardRange(j, size, m.count);
      const last = r.end === m.count;
      const shard = loadShard(dir, j, r.end - r.start, itemShape, last && m.count < m.settings.n);
      xs.push(shard.x);
      ys.push(shard.y);
    }
    return { x: torch.cat(xs, 0), y: torch.cat(ys, 0) };
  } finally {
    for (const t of [...xs, ...ys]) t.dispose();
  }
}

export interface VerifyBankOptions {
  /** The SHA-256 the bank's model must have (the model being fine-tuned, or measured). */
  modelSha256?: string;
  /** The fewest items usable (e.g. the replay sub-batch). */
  minCount?: number;
}

/**
 * The trainer's check before it replays a bank: the manifest is valid, the bank is complete, it
 * was sampled from the expected model, and every counted file is there (PNG files exist; shard
 * headers have the right shapes). Returns the manifest.
 */
export function verifyBank(dir: string, o: VerifyBankOptions = {}): BankManifest {
  const m = readBankManifest(dir);
  const file = path.join(dir, MANIFEST_FILE);
  if (m.count < m.settings.n) {
    throw new Error(`${dir}: the bank is incomplete (${m.count} of ${m.settings.n} items); ` +
      'run `difftune bank` again with the same settings to finish it');
  }
  if (o.minCount !== undefined && m.count < o.minCount) throw new Error(`${dir}: the bank has ${m.count} items, fewer than the ${o.minCount} needed`);
  if (o.modelSha256 !== undefined && m.model.sha256 !== o.modelSha256.toLowerCase()) {
    throw new Error(`${dir}: the bank was sampled from another model: ${m.model.file} with sha256 ${m.model.sha256}, ` +
      `but the model it is used with has sha256 ${o.modelSha256} (rebuild the bank from this model, or use the bank's model)`);
  }
  if (m.storage === 'png') {
    for (let i = 0; i < m.count; i++) {
      if (!fs.existsSync(bankImagePath(dir, i))) throw new Error(`${bankImagePath(dir, i)}: missing (the manifest counts ${m.count} images)`);
    }
  } else {
    const itemShape = itemShapeOf(m, file);
    const size = m.settings.shardSize!;
    for (let j = 0; j * size < m.count; j++) {
      const r = shardRange(j, size, m.count);
      const shardFile = bankShardPath(dir, j);
      if (!fs.existsSync(shardFile)) throw new Error(`${shardFile}: missing (the manifest counts ${m.count} items)`);
      const x = readSafetensorsHeader(shardFile).tensors.get('x');
      const expected = [r.end - r.start, ...itemShape];
      if (!x || x.shape.join() !== expected.join()) {
        throw new Error(`${shardFile}: expected x of shape [${expected.join(', ')}], found ${x ? `[${x.shape.join(', ')}]` : 'no x'}`);
      }
    }
  }
  return m;
}
