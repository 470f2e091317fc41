// `difftune extractor train`: trains the offline FID feature extractor (the iconnet classifier).
import * as path from 'path';
import * as torch from '../torch';
import { Device } from '../torch';
import { cardPath, trainExtractor } from '../eval/train-extractor';
import { parseFlags } from './args';
import { configureThreads } from './threads';
import { checkWritableDir } from './writable';

const TRAIN_FLAGS = {
  data: { type: 'string', help: 'class-subfolder image folder to train on (the iconnet source: class = icon set)' },
  out: { type: 'string', help: 'weights file to write (.safetensors); the model card goes beside it as .json' },
  epochs: { type: 'number', default: 6, help: 'passes over the train split' },
  batch: { type: 'number', default: 128, help: 'images per step' },
  lr: { type: 'number', default: 2e-3, help: 'peak learning rate (AdamW, warm-up then cosine decay)' },
  'weight-decay': { type: 'number', default: 0.05, help: 'AdamW weight decay (not on norms and biases)' },
  seed: { type: 'number', default: 0, help: 'seed of the initialisation, the data order and the train/eval split' },
  'eval-fraction': { type: 'number', default: 0.1, help: 'part of the data held out for the reported accuracy' },
  widths: { type: 'string', default: '32,64,128,256', value: 'n,n,...', help: 'stem and stage widths; the last is the feature dimension' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
} as const;

const USAGE = `usage: difftune extractor train --data DIR --out FILE.safetensors [options]

Trains the offline feature extractor for FID/KID (fid_iconnet): a small residual classifier on
32x32 images whose penultimate layer gives the features. 'difftune extractor train --help' lists the options.`;

export async function runExtractor(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return;
  }
  if (sub !== 'train') throw new Error(`extractor: unknown subcommand '${sub}' (expected 'train')`);
  const flags = parseFlags('extractor train', 'Train the iconnet feature extractor (FID/KID features) on a class-subfolder dataset.', TRAIN_FLAGS, rest);
  if (!flags) return;
  const widths = flags.widths.split(',').map((s) => Number(s.trim()));
  if (widths.some((w) => !Number.isInteger(w) || w < 1)) throw new Error(`--widths: expected comma-separated positive integers, got '${flags.widths}'`);
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);
  configureThreads();
  checkWritableDir('out', path.dirname(path.resolve(flags.out))); // before training
  const card = await trainExtractor({
    data: flags.data,
    out: flags.out,
    epochs: flags.epochs,
    batch: flags.batch,
    lr: flags.lr,
    weightDecay: flags['weight-decay'],
    seed: flags.seed,
    evalFraction: flags['eval-fraction'],
    widths,
    device,
    command: ['difftune', 'extractor', ...argv].join(' '),
  });
  console.log(`eval accuracy ${(100 * card.accuracy.eval).toFixed(2)}% (majority class ${(100 * card.accuracy.chance).toFixed(2)}%, ` +
    `${card.data.classes.length} classes); wrote ${flags.out} and ${cardPath(flags.out)}`);
}
