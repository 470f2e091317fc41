// `difftune ewc`: how much of the pretrained model's knowledge fine-tuning overwrote, as the EWC
// distance of fine-tuned weights from the pretrained ones under the pretrained model's diagonal Fisher
// on its knowledge bank (src/eval/ewc.ts). Several fine-tuned models share one Fisher.
import * as path from 'path';
import { DiagonalFisher, ewcDistance, EwcResult } from '../eval/ewc';
import { checkSameArchitecture, fisherOnBank, pretrainedAs, pretrainedConfig } from '../eval/ewc-setup';
import { DiT } from '../models/dit';
import { loadDiT } from '../models/dit-io';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { writeFileAtomic } from '../tuning/write-atomic';
import { parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { configureThreads } from './threads';
import { checkWritableDir } from './writable';

const FLAGS = {
  pretrained: { type: 'string', help: 'the pretrained DiT (.safetensors with its .json, or an official .pt)' },
  finetuned: { type: 'string', help: 'fine-tuned DiT(s) of the same architecture, comma-separated (e.g. finetune runs\' model.safetensors)' },
  bank: { type: 'string', help: 'the knowledge bank sampled from --pretrained (`difftune bank`): the inputs of the Fisher' },
  'pretrained-config': { type: 'string', default: '', help: 'config JSON of the pretrained model (default: beside its weights)' },
  key: { type: 'string', default: '', help: "which weights of a training checkpoint: 'ema' (default when present) or 'model'" },
  'skip-unknown': SKIP_UNKNOWN_FLAG,
  n: { type: 'number', default: 256, help: 'bank items in the Fisher (the first n; fewer if the bank is smaller)' },
  draws: { type: 'number', default: 1, help: 'timestep and noise draws per item' },
  labels: { type: 'string', default: 'null', help: "'null': the unconditional branch, as Diff-Tuning replays the bank; 'bank': the labels the items were sampled with" },
  seed: { type: 'number', default: 0, help: 'seed of the timesteps and noise' },
  out: { type: 'string', default: 'ewc.json', help: 'the result JSON' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
} as const;

export interface EwcReport {
  command: string;
  pretrained: string;
  bank: string;
  fisher: { items: number; draws: number; samples: number; labels: string; seed: number; seconds: number };
  models: Array<{ file: string } & EwcResult>;
}

function stateOf(model: DiT): Map<string, Tensor> {
  return new Map(model.namedParameters());
}

export async function runEwc(argv: string[], log: (m: string) => void = (m) => console.log(m)): Promise<EwcReport | null> {
  const flags = parseFlags('ewc', 'EWC distance of fine-tuned DiTs from their pretrained model (diagonal Fisher on the knowledge bank).', FLAGS, argv);
  if (!flags) return null;
  for (const k of ['n', 'draws'] as const) if (!Number.isInteger(flags[k]) || flags[k] < 1) throw new Error(`--${k} must be a positive integer, got ${flags[k]}`);
  if (!Number.isInteger(flags.seed) || flags.seed < 0) throw new Error(`--seed must be a non-negative integer, got ${flags.seed}`);
  if (flags.labels !== 'null' && flags.labels !== 'bank') throw new Error(`--labels must be 'null' or 'bank', got '${flags.labels}'`);
  const files = flags.finetuned.split(',').map((s) => s.trim()).filter(Boolean);
  if (!files.length) throw new Error('--finetuned: no file given');
  configureThreads();
  if (flags.out) checkWritableDir('out', path.dirname(path.resolve(flags.out))); // before the Fisher is computed
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);
  const key = flags.key || undefined;
  const skipUnknown = flags['skip-unknown'];

  const finetuned = files.map((f) => ({ file: f, model: loadDiT(f, { device, key, skipUnknown }).model }));
  let fisher: DiagonalFisher | null = null;
  let pretrained: DiT | null = null;
  try {
    const base = pretrainedConfig(flags.pretrained, flags['pretrained-config']);
    const arch = finetuned[0].model.config;
    for (const f of finetuned) {
      checkSameArchitecture(base, f.model.config, `--finetuned ${f.file}`);
      if (f.model.config.useGamma !== arch.useGamma || f.model.config.gammaDepth !== arch.gammaDepth) {
        throw new Error(`--finetuned ${f.file}: DiffFit gammas differ from ${files[0]}'s; one Fisher serves one architecture (run them separately)`);
      }
    }
    pretrained = pretrainedAs(flags.pretrained, base, arch, { device, key, skipUnknown });
    const started = Date.now();
    log(`Fisher of ${flags.pretrained} on up to ${flags.n} bank items x ${flags.draws} draw(s), ${flags.labels} labels`);
    // The Fisher must stand for this model's knowledge: a bank from another model is refused.
    const onBank = await fisherOnBank(pretrained, flags.bank, {
      items: flags.n, draws: flags.draws, seed: flags.seed, labels: flags.labels, modelFile: flags.pretrained, device,
      onProgress: (done, total) => { if (done % 64 === 0 || done === total) log(`  ${done}/${total}`); },
    });
    fisher = onBank;
    const items = onBank.items;
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const theta0 = stateOf(pretrained);
    const models = finetuned.map((f) => ({ file: path.resolve(f.file), ...ewcDistance(onBank, theta0, stateOf(f.model)) }));
    for (const m of models) {
      log(`${m.file}: EWC ${m.total.toPrecision(4)} (${m.changed} of ${m.elements} weights moved; ${m.meanOverChanged.toExponential(3)} per moved weight)` +
        (m.notInFisher.length ? `; ${m.notInFisher.length} adapter tensors not counted` : ''));
    }
    const report: EwcReport = {
      command: `difftune ewc ${argv.join(' ')}`,
      pretrained: path.resolve(flags.pretrained),
      bank: path.resolve(flags.bank),
      fisher: { items, draws: flags.draws, samples: onBank.samples, labels: flags.labels, seed: flags.seed, seconds },
      models,
    };
    writeFileAtomic(flags.out, JSON.stringify(report, null, 2) + '\n');
    log(`wrote ${flags.out}`);
    return report;
  } finally {
    if (fisher) for (const v of fisher.values.values()) v.dispose();
    pretrained?.dispose();
    for (const f of finetuned) f.model.dispose();
  }
}
