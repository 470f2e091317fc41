// The knowledge bank's on-disk format: manifest.json (what was sampled, from which model, how
// many items are complete) and where each item lives. Building and reading are in bank.ts.
//
//   DIR/manifest.json                         this file's BankManifest, rewritten atomically per batch
//   DIR/images/000000.png ...                 storage 'png' (pixel-space models): DIR is a class-subfolder
//                                             image folder whose single class is "images"
//   DIR/shards/shard-000000.safetensors ...   storage 'latents': shard j holds items
//                                             [j*shardSize, (j+1)*shardSize) as x float32 [k,C,H,W], y int64 [k]
import * as fs from 'fs';
import * as path from 'path';

export const BANK_FORMAT = 'difftune-bank';
export const BANK_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const IMAGES_DIR = 'images';
export const SHARDS_DIR = 'shards';
/** Items per latent shard when not given (16 MB per shard for 4x32x32 latents). */
export const DEFAULT_SHARD_SIZE = 1000;
/** Length of the base diffusion process the respaced steps are taken from (DiT's create_diffusion). */
export const BASE_DIFFUSION_STEPS = 1000;

export type BankStorage = 'png' | 'latents';

/** What to sample: the settings a bank is built with (bank.ts's buildBank input). */
export interface BankSettings {
  /** Items in the bank. */
  n: number;
  /** 'uniform': balanced class labels (see bank.ts); 'unconditional': every item gets the null label, no guidance. */
  labels: 'uniform' | 'unconditional';
  /** Classifier-free guidance scale (1 = none; must be 1 for unconditional banks). */
  cfg: number;
  /** Output channels that get guidance: DiT's 3 (the official behaviour) or all of them. */
  guideChannels: 3 | 'all';
  sampler: 'ddpm' | 'ddim';
  /** Respaced sampling steps out of the 1000-step process (DiT's sample.py: timestep_respacing=str(steps)). */
  steps: number;
  /** DDIM eta (0: deterministic). */
  eta: number;
  seed: number;
  /** Items sampled per forward batch. Part of the bank's identity: batched float math is not bitwise batch-size independent. */
  batchSize: number;
  /** Clamp predicted x_0 to [-1, 1] (DiT does for pixels, not for latents). */
  clip: boolean;
  /** Items per shard (latent banks only; default 1000). */
  shardSize?: number;
  /** 'bf16': the model runs under bf16 autocast (recorded only then; absent means float32). */
  precision?: 'fp32' | 'bf16';
}

/** The settings as recorded: the requested ones plus the class count the model fixes (shardSize only for latent banks). */
export interface BankRecordedSettings extends BankSettings {
  numClasses: number;
}

export interface BankModel {
  /** Basename of the weights file the bank was sampled from. */
  file: string;
  /** Hex SHA-256 of that file. */
  sha256: string;
  /** The model's official constructor arguments (snake_case model_args). */
  config: Record<string, number | boolean>;
}

export interface BankManifest {
  format: typeof BANK_FORMAT;
  version: typeof BANK_VERSION;
  storage: BankStorage;
  /** Items complete on disk: 0..count-1 (never counts a half-written item). */
  count: number;
  model: BankModel;
  settings: BankRecordedSettings;
  /** ISO 8601 times. */
  created: string;
  updated: string;
}

/** The order in which settings are written and compared. */
export const SETTING_FIELDS = [
  'n', 'labels', 'numClasses', 'cfg', 'guideChannels', 'sampler', 'steps', 'eta', 'seed', 'batchSize', 'clip', 'shardSize', 'precision',
] as const;

type Check = (v: unknown) => boolean;
const isInt = (min: number, max = Number.MAX_SAFE_INTEGER): Check => (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const isNum = (min: number): Check => (v) => typeof v === 'number' && Number.isFinite(v) && v >= min;
const oneOf = (...values: unknown[]): Check => (v) => values.includes(v);

/** Each setting's rule, with the words the error uses. */
const SETTING_RULES: Record<(typeof SETTING_FIELDS)[number], [Check, string]> = {
  n: [isInt(1), 'a positive integer'],
  labels: [oneOf('uniform', 'unconditional'), "'uniform' or 'unconditional'"],
  numClasses: [isInt(1), 'a positive integer'],
  cfg: [isNum(1), 'a number >= 1 (1 = no guidance)'],
  guideChannels: [oneOf(3, 'all'), "3 or 'all'"],
  sampler: [oneOf('ddpm', 'ddim'), "'ddpm' or 'ddim'"],
  steps: [isInt(1, BASE_DIFFUSION_STEPS), `an integer in 1..${BASE_DIFFUSION_STEPS}`],
  eta: [isNum(0), 'a number >= 0'],
  seed: [isInt(0), 'a non-negative integer'],
  batchSize: [isInt(1), 'a positive integer'],
  clip: [(v) => typeof v === 'boolean', 'true or false'],
  shardSize: [isInt(1), 'a positive integer'],
  precision: [oneOf('fp32', 'bf16'), "'fp32' or 'bf16'"],
};

function fail(where: string, field: string, expected: string, got: unknown): never {
  throw new Error(`${where}: '${field}' must be ${expected}, got ${JSON.stringify(got) ?? String(got)}`);
}

function checkSettings(s: Record<string, unknown>, where: string, prefix: string, required: readonly string[]): void {
  for (const field of SETTING_FIELDS) {
    const v = s[field];
    if (v === undefined) {
      if (required.includes(field)) throw new Error(`${where}: '${prefix}${field}' is missing`);
      continue;
    }
    const [ok, expected] = SETTING_RULES[field];
    if (!ok(v)) fail(where, prefix + field, expected, v);
  }
  for (const key of Object.keys(s)) {
    if (!(SETTING_FIELDS as readonly string[]).includes(key)) throw new Error(`${where}: unknown setting '${prefix}${key}'`);
  }
  if (s.labels === 'unconditional' && s.cfg !== 1) {
    throw new Error(`${where}: '${prefix}cfg' must be 1 for an unconditional bank (every item gets the null label, so there is nothing to guide), got ${s.cfg}`);
  }
}

const REQUESTED_FIELDS = SETTING_FIELDS.filter((f) => f !== 'numClasses' && f !== 'shardSize' && f !== 'precision');

/** Validates requested settings; errors name the field and what was expected. */
export function validateBankSettings(s: BankSettings, where = 'bank settings'): BankSettings {
  if (typeof s !== 'object' || s === null) throw new Error(`${where}: expected an object of settings`);
  checkSettings(s as unknown as Record<string, unknown>, where, '', REQUESTED_FIELDS);
  return s;
}

/** The requested settings as they will be recorded for a model with numClasses classes. */
export function recordedSettings(s: BankSettings, numClasses: number, storage: BankStorage): BankRecordedSettings {
  const out: BankRecordedSettings = {
    n: s.n, labels: s.labels, numClasses, cfg: s.cfg, guideChannels: s.guideChannels, sampler: s.sampler, steps: s.steps,
    eta: s.eta, seed: s.seed, batchSize: s.batchSize, clip: s.clip,
  };
  if (storage === 'latents') out.shardSize = s.shardSize ?? DEFAULT_SHARD_SIZE;
  if (s.precision === 'bf16') out.precision = 'bf16'; // float32 banks keep the manifest they always had
  return out;
}

export interface SettingDifference {
  field: string;
  bank: unknown;
  requested: unknown;
}

/** Fields (of SETTING_FIELDS, in order) whose values differ; `skip` leaves some out of the comparison. */
export function settingDifferences(bank: BankRecordedSettings, requested: Partial<BankRecordedSettings>,
  skip: readonly string[] = []): SettingDifference[] {
  const out: SettingDifference[] = [];
  for (const field of SETTING_FIELDS) {
    if (skip.includes(field)) continue;
    if (field === 'precision') {
      // Absent means float32, on either side.
      const [was, now] = [bank.precision ?? 'fp32', requested.precision ?? 'fp32'];
      if (was !== now) out.push({ field, bank: was, requested: now });
      continue;
    }
    if (!(field in requested)) continue;
    if (bank[field] !== requested[field]) out.push({ field, bank: bank[field], requested: requested[field] });
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates a parsed manifest.json; errors name the file and the field. */
export function parseBankManifest(value: unknown, file: string): BankManifest {
  if (!isObject(value)) throw new Error(`${file}: expected a JSON object (a difftune bank manifest)`);
  if (value.format !== BANK_FORMAT) fail(file, 'format', `'${BANK_FORMAT}'`, value.format);
  if (value.version !== BANK_VERSION) fail(file, 'version', `${BANK_VERSION} (this difftune reads version ${BANK_VERSION} banks)`, value.version);
  if (value.storage !== 'png' && value.storage !== 'latents') fail(file, 'storage', "'png' or 'latents'", value.storage);
  const m = value.model;
  if (!isObject(m)) fail(file, 'model', 'an object {file, sha256, config}', m);
  if (typeof m.file !== 'string' || !m.file) fail(file, 'model.file', 'the weights file name', m.file);
  if (typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.sha256)) fail(file, 'model.sha256', 'a hex SHA-256 (64 characters)', m.sha256);
  if (!isObject(m.config)) fail(file, 'model.config', 'an object of DiT constructor arguments', m.config);
  for (const [k, v] of Object.entries(m.config)) {
    if (typeof v !== 'number' && typeof v !== 'boolean') fail(file, `model.config.${k}`, 'a number or boolean', v);
  }
  const s = value.settings;
  if (!isObject(s)) fail(file, 'settings', 'an object', s);
  checkSettings(s, file, 'settings.', SETTING_FIELDS.filter((f) => f !== 'shardSize' && f !== 'precision'));
  if (value.storage === 'latents' && s.shardSize === undefined) throw new Error(`${file}: 'settings.shardSize' is missing (a latent bank is sharded)`);
  if (value.storage === 'png' && s.shardSize !== undefined) throw new Error(`${file}: 'settings.shardSize' belongs to latent banks only (storage is 'png')`);
  if (!isInt(0, s.n as number)(value.count)) fail(file, 'count', `an integer in 0..settings.n (${s.n})`, value.count);
  for (const k of ['created', 'updated'] as const) {
    if (typeof value[k] !== 'string' || Number.isNaN(Date.parse(value[k] as string))) fail(file, k, 'an ISO 8601 time', value[k]);
  }
  return value as unknown as BankManifest;
}

/** Reads and validates DIR/manifest.json. */
export function readBankManifest(dir: string): BankManifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(file)) throw new Error(`${dir}: not a difftune knowledge bank (no ${MANIFEST_FILE})`);
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not readable JSON (${(e as Error).message})`);
  }
  return parseBankManifest(value, file);
}

/** Writes DIR/manifest.json atomically (temp file, fsync, rename): a reader sees the old or the new one. */
export function writeBankManifest(dir: string, m: BankManifest): void {
  const file = path.join(dir, MANIFEST_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, JSON.stringify(m, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** DIR/images/000123.png: item i of a PNG bank. */
export function bankImagePath(dir: string, i: number): string {
  return path.join(dir, IMAGES_DIR, `${String(i).padStart(6, '0')}.png`);
}

/** DIR/shards/shard-000004.safetensors: shard j of a latent bank. */
export function bankShardPath(dir: string, j: number): string {
  return path.join(dir, SHARDS_DIR, `shard-${String(j).padStart(6, '0')}.safetensors`);
}

/** The items [start, end) shard j holds in a bank of `count` items. */
export function shardRange(j: number, shardSize: number, count: number): { start: number; end: number } {
  return { start: j * shardSize, end: Math.min((j + 1) * shardSize, count) };
}
