// `difftune finetune` and `difftune pretrain`: one trainer, configured by a JSON file and flags.
// Flags are shortcuts for config fields; `--set path=value` reaches any field. A short summary is
// printed; the resolved config is saved as RUN/config.json (--print-config prints it).
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../torch';
import { describeSchema, fieldAt } from '../tuning/config-schema';
import { Method, resolveConfig, TRAIN_SCHEMA, TrainConfig } from '../tuning/config';
import { estimateMemory, formatPlan } from '../tuning/plan';
import { prepareInputs } from '../tuning/setup';
import { runSummary } from '../tuning/run-summary';
import { Trainer } from '../tuning/trainer';
import { listCheckpoints } from '../tuning/checkpoint';
import { writeFileAtomic } from '../tuning/write-atomic';
import { FlagSpec, parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { schemaFlag, SET_FLAG } from './config-flags';
import { configureThreads } from './threads';
import { checkWritableDir } from './writable';

/** Flag -> config field. */
const SHORTCUTS: Record<string, string> = {
  method: 'method', ckpt: 'model.ckpt', 'model-config': 'model.config', model: 'model.name', data: 'data.target',
  bank: 'data.bank', resolution: 'data.resolution', labels: 'labels.mode', tau: 'objective.tau', 'tau-replay': 'objective.tauReplay',
  'timestep-mode': 'objective.timestepMode', 'replay-ratio': 'objective.replayRatio', 'retention-weight': 'objective.retentionWeight',
  weighting: 'objective.lossWeighting', peft: 'peft.method', 'lora-rank': 'peft.loraRank', lr: 'optim.lr',
  'lr-schedule': 'optim.schedule', 'warmup-steps': 'optim.warmupSteps', batch: 'optim.batchSize',
  accumulate: 'optim.accumulate', 'grad-clip': 'optim.gradClip', ema: 'ema.decay', steps: 'run.steps', seed: 'run.seed',
  device: 'run.device', precision: 'run.precision', out: 'run.out', 'log-every': 'run.logEvery', 'checkpoint-every': 'run.checkpointEvery',
  'preview-every': 'run.previewEvery', 'progress-every': 'run.progressEvery', vae: 'model.vae',
};

function flagSpec(method: Method | null): FlagSpec {
  const spec: FlagSpec = {
    config: { type: 'string', default: '', help: 'JSON config file (see --help-config for every field)' },
    resume: { type: 'boolean', default: false, help: 'continue from the newest checkpoint in the run folder' },
    'print-config': { type: 'boolean', default: false, help: 'print the resolved config and exit' },
    'help-config': { type: 'boolean', default: false, help: 'list every config field with its default' },
    plan: { type: 'boolean', default: false, help: 'print the memory plan and exit' },
    'skip-unknown': { ...SKIP_UNKNOWN_FLAG, help: `model.skipUnknown: ${SKIP_UNKNOWN_FLAG.help}` },
  };
  for (const [flag, field] of Object.entries(SHORTCUTS)) {
    if (method === 'pretrain' && ['ckpt', 'bank', 'labels', 'tau', 'tau-replay', 'replay-ratio', 'retention-weight'].includes(flag)) continue;
    if (flag === 'method' && method === 'pretrain') continue;
    spec[flag] = schemaFlag(field, fieldAt(TRAIN_SCHEMA, field));
  }
  if (method === 'pretrain') delete spec['skip-unknown']; // no checkpoint to read
  spec.set = SET_FLAG;
  return spec;
}

/** Splits `--set a.b=v` pairs off argv (they may repeat). */
export function takeSets(argv: string[]): { rest: string[]; sets: [string, string][] } {
  const rest: string[] = [];
  const sets: [string, string][] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = a === '--set' ? argv[++i] : a.startsWith('--set=') ? a.slice(6) : null;
    if (v === null) { rest.push(a); continue; }
    const eq = v?.indexOf('=') ?? -1;
    if (!v || eq <= 0) throw new Error(`--set expects path=value (e.g. --set objective.tau=0.5), got '${v ?? ''}'`);
    sets.push([v.slice(0, eq), v.slice(eq + 1)]);
  }
  return { rest, sets };
}

const SUMMARIES = {
  pretrain: 'Train a DiT from scratch on an image folder (the source model for transfer).',
  finetune: 'Fine-tune a pretrained DiT on an image folder: full, diff-tuning, ablations, P2/Min-SNR, PEFT.',
  plan: 'Estimate the memory of a finetune config without training it (the options are finetune\'s; `difftune pretrain --plan` for pretrain).',
};
const CONFIG_NOTE = 'Each option below sets the config field it names; --set path=value sets any field, --config FILE reads them from JSON.';

export async function runTraining(command: 'finetune' | 'pretrain' | 'plan', argv: string[]): Promise<void> {
  const { rest, sets } = takeSets(argv);
  const spec = flagSpec(command === 'pretrain' ? 'pretrain' : null);
  if (command === 'plan') { delete spec.plan; delete spec.resume; }
  const flags = parseFlags(command, `${SUMMARIES[command]}\n${CONFIG_NOTE}`, spec, rest) as Record<string, string | boolean> | null;
  if (!flags) return;
  if (command === 'plan') flags.plan = true;
  if (flags['help-config']) {
    console.log(`config fields (JSON file via --config, or --set path=value):\n${describeSchema(TRAIN_SCHEMA).join('\n')}`);
    return;
  }
  const overrides: [string, string][] = [];
  if (command === 'pretrain') overrides.push(['method', 'pretrain']);
  if (flags['skip-unknown']) overrides.push(['model.skipUnknown', 'true']);
  for (const [flag, field] of Object.entries(SHORTCUTS)) {
    if (typeof flags[flag] === 'string' && flags[flag] !== '') overrides.push([field, flags[flag] as string]);
  }
  const config = resolveConfig({ file: (flags.config as string) || undefined, overrides: [...overrides, ...sets], planOnly: Boolean(flags.plan) });
  if (command !== 'pretrain' && config.method === 'pretrain') throw new Error("finetune: method 'pretrain' belongs to `difftune pretrain`");
  if (flags['print-config']) {
    console.log(JSON.stringify(config, null, 2));
    return;
  }
  configureThreads();
  torch.manualSeed(config.run.seed);
  console.log(runSummary(config));

  // Before the data and model load: a wrong --out or --resume should not wait for them.
  if (!flags.plan) checkRunFolder(config, Boolean(flags.resume));
  const inputs = await prepareInputs(config);
  const plan = estimateMemory(inputs.model, config);
  console.log(formatPlan(plan));
  if (flags.plan) return;
  const trainer = new Trainer(config, inputs, { resume: Boolean(flags.resume) });
  // Saved once the trainer accepted the folder (a resume compares against the old config.json).
  writeFileAtomic(path.join(config.run.out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  try {
    const { modelFile } = await trainer.run();
    console.log(`done: ${trainer.step} steps. EMA weights: ${modelFile}  (sample them: difftune sample --ckpt ${modelFile})`);
  } finally {
    trainer.dispose();
  }
}

/**
 * The run folder before any work: writable, not holding another run's checkpoints unless resuming,
 * and holding some when resuming (a mistyped --out must not silently start again from step 0).
 */
export function checkRunFolder(c: TrainConfig, resume: boolean): void {
  const ckpts = path.join(c.run.out, 'checkpoints');
  const held = listCheckpoints(ckpts).length;
  if (!resume && held > 0) {
    throw new Error(`${c.run.out} already holds checkpoints: pass --resume to continue that run, or choose another --out`);
  }
  if (resume && held === 0) {
    throw new Error(`--resume: ${c.run.out} holds no checkpoints to resume from (${fs.existsSync(c.run.out) ? 'no step-N.safetensors in its checkpoints/' : 'no such folder'}); ` +
      'check --out, or drop --resume to start a new run');
  }
  checkWritableDir('out', c.run.out);
}

export const runFinetune = (argv: string[]): Promise<void> => runTraining('finetune', argv);
export const runPretrain = (argv: string[]): Promise<void> => runTraining('pretrain', argv);
