// Writes a built dataset as a class-subfolder PNG tree (root/<class>/<name>.png), the layout
// image-folder.ts reads. Images are deduplicated by a hash of their pixels across the whole
// dataset (the first one added wins, so builders add in a fixed order), and the folder appears
// all at once: it is built as DIR.tmp-PID and renamed to DIR only after dataset.json and
// ATTRIBUTION.md are written, so a failed or killed build never leaves a half folder at DIR.
import * as fs from 'fs';
import * as path from 'path';
import { encodePng } from '../../report/png';
import { sha256Bytes } from '../hash';

/** Name of the metadata file in every built folder; its presence marks a folder as ours. */
export const DATASET_JSON = 'dataset.json';
export const ATTRIBUTION_MD = 'ATTRIBUTION.md';
export const DATASET_FORMAT = 'difftune-dataset/1';

/** Where an image set came from, as recorded in dataset.json and ATTRIBUTION.md. */
export interface DatasetSource {
  /** npm/Debian package, or plain files the user pointed the build at. */
  kind: 'npm' | 'debian' | 'files';
  package: string;
  version: string;
  /** SPDX id or short licence name. */
  licence: string;
  author?: string;
  url?: string;
  /** Images this source contributed after filtering and dedup (filled in by the writer's caller). */
  images?: number;
  /** For Debian packages: the package's copyright file, copied to LICENSE.<package>.txt beside dataset.json. */
  copyrightFile?: string;
}

/** dataset.json: what a built folder holds and how it was made. */
export interface DatasetInfo {
  format: typeof DATASET_FORMAT;
  name: string;
  description: string;
  image: { width: number; height: number; channels: 1 | 3; background: string | null };
  count: number;
  /** Images per class folder, in sorted class order. */
  classes: Record<string, number>;
  sources: DatasetSource[];
  /** Why images were left out, and how many (duplicate, renderFailed, skinTone, ...). */
  skipped: Record<string, number>;
  /** SHA-256 over the sorted lines "<class>/<file> <pixelHash>\n" (see pixelHash): changes iff any image or name does. */
  contentHash: string;
  /** The command that rebuilds this folder. */
  command: string;
  /** Builder options that changed what was written (split, limit, ...). */
  options: Record<string, string | number>;
  notes: string[];
}

/** Pixels of one image, interleaved 8-bit, row by row, top first. */
export interface DatasetImage {
  cls: string;
  /** File name without extension; made safe and unique within its class by the writer. */
  name: string;
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** Identity of an image's pixels (shape included, so a 28x28 grey image never equals a 14x56 one). */
export function pixelHash(img: Pick<DatasetImage, 'pixels' | 'width' | 'height' | 'channels'>): string {
  const header = Buffer.from(`${img.width}x${img.height}x${img.channels}\n`, 'latin1');
  return sha256Bytes(Buffer.concat([header, Buffer.from(img.pixels.buffer, img.pixels.byteOffset, img.pixels.byteLength)]));
}

/** Folder and file names: lower-case letters, digits, '.', '_', '-' only (portable, no quoting needed). */
export function safeName(s: string): string {
  const out = s
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/&/g, ' and ')
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[-.]+|-+$/g, '');
  return out || 'unnamed';
}

export type AddResult = 'added' | 'duplicate' | 'over-limit';

export interface WriterOptions {
  /** Keep at most this many images per class (later ones are counted as 'over-limit'). */
  limitPerClass?: number;
}

/**
 * Collects images into DIR.tmp-PID; finish() writes the metadata and renames it to DIR (replacing
 * an earlier build there), abort() deletes it. DIR itself is never touched until finish().
 */
export class DatasetFolderWriter {
  readonly tmp: string;
  private readonly seen = new Map<string, string>();
  private readonly perClass = new Map<string, number>();
  private readonly names = new Map<string, Set<string>>();
  private readonly lines: string[] = [];
  private readonly skippedCounts: Record<string, number> = {};
  private shape: { width: number; height: number; channels: 1 | 3 } | null = null;
  private done = false;

  constructor(readonly out: string, private readonly options: WriterOptions = {}) {
    checkReplaceable(out);
    const limit = options.limitPerClass;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
      throw new RangeError(`dataset writer: limit per class must be a positive integer, got ${limit}`);
    }
    this.tmp = `${out}.tmp-${process.pid}`;
    removeStaleTempFolders(out);
    fs.mkdirSync(this.tmp, { recursive: true });
  }

  get count(): number {
    return this.lines.length;
  }

  /** Counts an image left out for a reason (shown in dataset.json's skipped). */
  skip(reason: string, n = 1): void {
    this.skippedCounts[reason] = (this.skippedCounts[reason] ?? 0) + n;
  }

  classCount(cls: string): number {
    return this.perClass.get(safeName(cls)) ?? 0;
  }

  /** True when every class in `classes` already holds limitPerClass images (builders may stop early). */
  full(classes: string[]): boolean {
    const limit = this.options.limitPerClass;
    return limit !== undefined && classes.every((c) => this.classCount(c) >= limit);
  }

  /** Writes one image as PNG unless its pixels were seen before or its class is full. */
  add(img: DatasetImage): AddResult {
    if (this.done) throw new Error('dataset writer: add() after finish() or abort()');
    if (img.pixels.length !== img.width * img.height * img.channels) {
      throw new RangeError(`dataset writer: ${img.cls}/${img.name}: expected ${img.width * img.height * img.channels} bytes for ${img.width}x${img.height}x${img.channels}, got ${img.pixels.length}`);
    }
    if (!this.shape) this.shape = { width: img.width, height: img.height, channels: img.channels };
    else if (this.shape.width !== img.width || this.shape.height !== img.height || this.shape.channels !== img.channels) {
      const s = this.shape;
      throw new Error(`dataset writer: ${img.cls}/${img.name} is ${img.width}x${img.height}x${img.channels}, but the dataset's images are ${s.width}x${s.height}x${s.channels}`);
    }
    const cls = safeName(img.cls);
    const limit = this.options.limitPerClass;
    if (limit !== undefined && (this.perClass.get(cls) ?? 0) >= limit) {
      this.skip('overLimit');
      return 'over-limit';
    }
    const hash = pixelHash(img);
    if (this.seen.has(hash)) {
      this.skip('duplicate');
      return 'duplicate';
    }
    const file = this.uniqueName(cls, safeName(img.name));
    const rel = `${cls}/${file}`;
    this.seen.set(hash, rel);
    const dir = path.join(this.tmp, cls);
    if (!this.perClass.has(cls)) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, file), encodePng(img.pixels, img.width, img.height, img.channels));
    this.perClass.set(cls, (this.perClass.get(cls) ?? 0) + 1);
    this.lines.push(`${rel} ${hash}\n`);
    return 'added';
  }

  private uniqueName(cls: string, base: string): string {
    let used = this.names.get(cls);
    if (!used) this.names.set(cls, (used = new Set()));
    let name = `${base}.png`;
    for (let i = 2; used.has(name); i++) name = `${base}-${i}.png`;
    used.add(name);
    return name;
  }

  /**
   * Writes dataset.json, ATTRIBUTION.md and the Debian copyright files, then moves the folder to
   * `out` (an earlier build there is replaced). On any error (an empty dataset included) the temp
   * folder is deleted and `out` keeps what it held.
   */
  finish(meta: {
    name: string;
    description: string;
    sources: DatasetSource[];
    command: string;
    options?: Record<string, string | number>;
    notes?: string[];
    attribution: string;
    background: string | null;
  }): DatasetInfo {
    if (this.done) throw new Error('dataset writer: finish() called twice');
    try {
      if (this.lines.length === 0 || !this.shape) throw new Error(`dataset ${meta.name}: no images were written`);
      const classes: Record<string, number> = {};
      for (const cls of [...this.perClass.keys()].sort()) classes[cls] = this.perClass.get(cls)!;
      const info: DatasetInfo = {
        format: DATASET_FORMAT,
        name: meta.name,
        description: meta.description,
        image: { ...this.shape, background: meta.background },
        count: this.lines.length,
        classes,
        sources: meta.sources.map(({ copyrightFile, ...s }) => s),
        skipped: { ...this.skippedCounts },
        contentHash: sha256Bytes([...this.lines].sort().join('')),
        command: meta.command,
        options: meta.options ?? {},
        notes: meta.notes ?? [],
      };
      const copied = this.copyCopyrightFiles(meta.sources);
      const licences = copied.length ? `\n## Licence texts\n\n${copied.map((f) => `- [${f}](${f})`).join('\n')}\n` : '';
      fs.writeFileSync(path.join(this.tmp, ATTRIBUTION_MD), meta.attribution.trimEnd() + '\n' + licences);
      fs.writeFileSync(path.join(this.tmp, DATASET_JSON), JSON.stringify(info, null, 2) + '\n');
      this.moveIntoPlace();
      this.done = true;
      return info;
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Deletes the temp folder; `out` keeps whatever it held before. Safe to call more than once. */
  abort(): void {
    this.done = true;
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }

  /** Licence texts go next to dataset.json, not in a sub-folder: every sub-folder is a class. */
  private copyCopyrightFiles(sources: DatasetSource[]): string[] {
    const copied: string[] = [];
    for (const s of sources) {
      if (!s.copyrightFile || !fs.existsSync(s.copyrightFile)) continue;
      const name = `LICENSE.${safeName(s.package)}.txt`;
      fs.copyFileSync(s.copyrightFile, path.join(this.tmp, name));
      copied.push(name);
    }
    return copied;
  }

  private moveIntoPlace(): void {
    checkReplaceable(this.out);
    if (!fs.existsSync(this.out)) {
      fs.renameSync(this.tmp, this.out);
      return;
    }
    // Two renames: the old build is out of the way only for the instant between them.
    const old = `${this.out}.old-${process.pid}`;
    fs.rmSync(old, { recursive: true, force: true });
    fs.renameSync(this.out, old);
    try {
      fs.renameSync(this.tmp, this.out);
    } catch (e) {
      fs.renameSync(old, this.out);
      throw e;
    }
    fs.rmSync(old, { recursive: true, force: true });
  }
}

/** Deletes OUT.tmp-PID / OUT.old-PID folders left by builds that were killed (their process is gone). */
function removeStaleTempFolders(out: string): void {
  const dir = path.dirname(out);
  const base = path.basename(out);
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const m = /^(.*)\.(?:tmp|old)-(\d+)$/.exec(e);
    if (!m || m[1] !== base) continue;
    const pid = Number(m[2]);
    if (pid !== process.pid && processAlive(pid)) continue;
    fs.rmSync(path.join(dir, e), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A folder may be (re)built only if it is absent, empty, or an earlier build (holds dataset.json). */
function checkReplaceable(out: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(out);
  } catch {
    return;
  }
  if (!stat.isDirectory()) throw new Error(`${out} exists and is not a folder; choose another --out`);
  const entries = fs.readdirSync(out);
  if (entries.length > 0 && !entries.includes(DATASET_JSON)) {
    throw new Error(`${out} is a non-empty folder that is not a built dataset (no ${DATASET_JSON}); refusing to replace it, choose another --out`);
  }
}

/** Reads and checks a built folder's dataset.json; null if the folder has none. */
export function readDatasetInfo(dir: string): DatasetInfo | null {
  const file = path.join(dir, DATASET_JSON);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  let info: DatasetInfo;
  try {
    info = JSON.parse(text) as DatasetInfo;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (info.format !== DATASET_FORMAT) throw new Error(`${file}: format is ${JSON.stringify(info.format)}, expected "${DATASET_FORMAT}"`);
  if (typeof info.name !== 'string' || !Number.isInteger(info.count) || typeof info.classes !== 'object' || info.classes === null) {
    throw new Error(`${file}: expected string "name", integer "count" and object "classes"`);
  }
  return info;
}
