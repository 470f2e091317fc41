// `difftune datasets build <name>` and `difftune datasets list`: offline image datasets built from
// npm dev dependencies and Debian packages (see src/data/datasets/).
import * as path from 'path';
import { defaultDebCache } from '../data/datasets/debian';
import { buildDataset, DATASETS, defaultDataRoot, listDatasets } from '../data/datasets/registry';
import { encodeLatentCache } from '../data/latent-cache';
import { LATENT_DTYPES, LatentDType } from '../data/latent-cache-manifest';
import { ProgressBar } from '../report/progress';
import * as torch from '../torch';
import { Device } from '../torch';
import { configureThreads } from './threads';
import { helpText, parseFlags } from './args';
import { runDatasetsCondition } from './datasets-condition';

const BUILD_SUMMARY = 'Builds a dataset as a class-subfolder PNG folder (with dataset.json and ATTRIBUTION.md), from npm dev dependencies or Debian packages.';

function usage(): string {
  const width = Math.max(...DATASETS.map((d) => d.name.length));
  const rows = DATASETS.map((d) => `  ${d.name.padEnd(width)}  ${d.summary}`);
  return [
    'usage: difftune datasets build <name> [--out DIR] [--limit N] [--split train|test] [--idx-dir DIR] [--cache DIR]',
    '       difftune datasets list [--root DIR]',
    '       difftune datasets encode --vae DIR|FILE --in IMAGE_DIR --out DIR [--resolution 256] [--batch N] [--shard-size N]',
    '       difftune datasets condition --kind canny|sketch|segmentation|grayscale|lowres --in IMAGE_DIR --out DIR [--resolution N]',
    '',
    'datasets:',
    ...rows,
    '',
    `Default output: ${path.relative(process.cwd(), defaultDataRoot()) || '.'}/<name> (<name>-test for --split test).`,
    `Debian packages are unpacked (never installed) into ${defaultDebCache()} ($DIFFTUNE_CACHE/deb).`,
  ].join('\n');
}

export async function runDatasets(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(usage());
    return;
  }
  if (sub === 'build') return runBuild(rest);
  if (sub === 'list') return runList(rest);
  if (sub === 'encode') return runEncode(rest);
  if (sub === 'condition') return runDatasetsCondition(rest);
  throw new Error(`datasets: unknown subcommand '${sub}' (expected build, list, encode or condition)\n\n${usage()}`);
}

const BUILD_FLAGS = {
  out: { type: 'string', default: '', help: 'output folder (default data/<name> in the repository)' },
  limit: { type: 'number', default: 0, help: 'keep at most N images per class (0: all)' },
  split: { type: 'string', default: '', help: 'fashion-mnist: train or test (default train)' },
  'idx-dir': { type: 'string', default: '', help: 'fashion-mnist: read the IDX files from this folder instead of the Debian package' },
  cache: { type: 'string', default: '', help: 'Debian package cache (default $DIFFTUNE_CACHE/deb or ~/.cache/difftune/deb)' },
  concurrency: { type: 'number', default: 4, help: 'images rendered at once' },
} as const;

async function runBuild(argv: string[]): Promise<void> {
  const name = argv[0];
  if (!name || name.startsWith('-')) {
    if (name === '--help' || name === '-h') {
      // The options, then the datasets it knows.
      console.log(`${helpText('datasets build <name>', BUILD_SUMMARY, BUILD_FLAGS)}\n\n${usage()}`);
      return;
    }
    throw new Error(`datasets build: name the dataset to build (${DATASETS.map((d) => d.name).join(', ')})`);
  }
  const flags = parseFlags('datasets build', BUILD_SUMMARY, BUILD_FLAGS, argv.slice(1));
  if (!flags) return;
  if (flags.limit !== 0 && (!Number.isInteger(flags.limit) || flags.limit < 0)) throw new Error(`datasets build: --limit must be a whole number >= 0, got ${flags.limit}`);
  if (!Number.isInteger(flags.concurrency) || flags.concurrency < 1) throw new Error(`datasets build: --concurrency must be a whole number >= 1, got ${flags.concurrency}`);
  const command = ['difftune datasets build', name, ...argv.slice(1).filter((a) => !a.startsWith('--concurrency'))].join(' ');
  const result = await buildDataset(name, {
    out: flags.out || undefined,
    limit: flags.limit || undefined,
    split: (flags.split || undefined) as 'train' | 'test' | undefined,
    idxDir: flags['idx-dir'] || undefined,
    cacheDir: flags.cache || undefined,
    concurrency: flags.concurrency,
    command,
    log: (msg) => console.error(msg),
  });
  const { info } = result;
  const skipped = Object.entries(info.skipped).map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`built ${name}: ${info.count} images in ${Object.keys(info.classes).length} classes -> ${result.out} (${result.seconds.toFixed(1)} s)`);
  if (skipped) console.log(`left out: ${skipped}`);
}

function runList(argv: string[]): void {
  const flags = parseFlags('datasets list', 'Lists the known datasets, where each is built, its images per class and its licence.', {
    root: { type: 'string', default: '', help: 'folder holding built datasets (default data/ in the repository)' },
  }, argv);
  if (!flags) return;
  const root = flags.root ? path.resolve(flags.root) : defaultDataRoot();
  const { datasets, unreadable } = listDatasets(root);
  const show = (p: string) => path.relative(process.cwd(), p) || '.';
  console.log(`datasets under ${show(root)}:`);
  for (const { entry, built } of datasets) {
    const name = entry?.name ?? built[0].info.name;
    console.log('');
    console.log(`${name}  (${entry ? `${entry.licence}; from ${entry.from}` : 'not a known dataset'})`);
    if (entry) console.log(`  ${entry.summary}; a full build has about ${entry.expected.toLocaleString('en-US')} images`);
    if (built.length === 0) console.log(`  not built: difftune datasets build ${name}`);
    for (const { dir, info } of built) {
      const opts = Object.entries(info.options).map(([k, v]) => `${k}=${v}`).join(' ');
      console.log(`  built: ${show(dir)}  ${info.count} images, ${Object.keys(info.classes).length} classes, ${info.image.width}x${info.image.height}x${info.image.channels}${opts ? `  (${opts})` : ''}`);
      console.log(`    ${Object.entries(info.classes).map(([c, n]) => `${c} ${n}`).join(', ')}`);
    }
  }
  for (const u of unreadable) console.log(`\nunreadable: ${show(u.dir)}: ${u.error}`);
}

const ENCODE_SUMMARY = 'Encodes a class-subfolder image folder once through the VAE (each image and its horizontal flip) into a ' +
  'sharded latent cache (posterior mean and logvar of the scaled latents, a manifest with per-shard sha256); ' +
  'resumable: run it again to continue. Train on it with finetune --data DIR.';

async function runEncode(argv: string[]): Promise<void> {
  const flags = parseFlags('datasets encode', ENCODE_SUMMARY, {
    vae: { type: 'string', help: 'the VAE: a diffusers folder (e.g. sd-vae-ft-ema) or a weights file (.safetensors, .bin, ldm .ckpt/.pt)' },
    in: { type: 'string', help: 'class-subfolder image folder (torchvision ImageFolder layout)' },
    out: { type: 'string', help: 'the cache folder: new or empty, or a cache to resume' },
    resolution: { type: 'number', default: 256, help: 'images are centre-cropped to this side (ADM center_crop_arr) before encoding' },
    batch: { type: 'number', default: 16, help: 'images per encoder forward (each is also encoded flipped)' },
    'shard-size': { type: 'number', default: 1000, help: 'images per shard file' },
    dtype: { type: 'string', default: 'float32', help: `stored precision: ${LATENT_DTYPES.join(', ')}` },
    device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
  }, argv);
  if (!flags) return;
  if (!(LATENT_DTYPES as readonly string[]).includes(flags.dtype)) throw new Error(`datasets encode: --dtype must be ${LATENT_DTYPES.join(', ')}, got '${flags.dtype}'`);
  if (!/^(cpu|cuda(:\d+)?)$/.test(flags.device)) throw new Error(`datasets encode: --device must be cpu, cuda or cuda:N, got '${flags.device}'`);
  if (flags.device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`datasets encode: --device ${flags.device}: CUDA is not available in this build`);
  configureThreads();
  let bar: ProgressBar | undefined;
  const start = Date.now();
  const m = await encodeLatentCache({
    vae: flags.vae, input: flags.in, out: flags.out, resolution: flags.resolution, batchSize: flags.batch,
    shardSize: flags['shard-size'], dtype: flags.dtype as LatentDType, device: flags.device as Device,
    log: (line) => console.log(line),
    onProgress: (done, total) => {
      bar ??= new ProgressBar({ total, label: 'encode', initial: 0 });
      bar.update(done);
    },
  });
  bar?.done();
  console.log(`${flags.out}: ${m.count} images in ${m.classes.length} classes, latents ${m.latentShape.join('x')} x 2 flips ` +
    `(${m.dtype} moments), ${m.shards.length} shards, VAE ${m.vae.file} sha256 ${m.vae.sha256.slice(0, 16)}… (${((Date.now() - start) / 1000).toFixed(1)} s)`);
}
