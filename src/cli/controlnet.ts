// `difftune controlnet`: train a DiT-ControlNet on a frozen DiT with full fine-tuning or
// Diff-Tuning, on the same trainer as `finetune` (config file + flags + --set, resume, logs,
// previews), with the sudden-convergence detector in the loop.
import * as path from 'path';
import * as torch from '../torch';
import { describeSchema, fieldAt, FieldSpec } from '../tuning/config-schema';
import { TRAIN_SCHEMA } from '../tuning/config';
import { CONTROLNET_SCHEMA, resolveControlNetConfig } from '../tuning/controlnet-config';
import { trainControlNet } from '../tuning/controlnet-run';
import { runSummary } from '../tuning/run-summary';
import { FlagSpec, parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { schemaFlag, SET_FLAG } from './config-flags';
import { configureThreads } from './threads';
import { checkRunFolder, takeSets } from './train';

/** Flag -> config field ("controlnet." fields belong to the ControlNet section). */
const SHORTCUTS: Record<string, string> = {
  base: 'model.ckpt', 'base-config': 'model.config', condition: 'controlnet.condition', data: 'data.target', method: 'method',
  bank: 'data.bank', blocks: 'controlnet.blocks', labels: 'controlnet.labels', 'replay-condition': 'controlnet.replayCondition',
  'eval-every': 'controlnet.evalEvery', 'eval-samples': 'controlnet.evalSamples', 'eval-steps': 'controlnet.evalSteps',
  split: 'data.split', lr: 'optim.lr', batch: 'optim.batchSize', ema: 'ema.decay', steps: 'run.steps', seed: 'run.seed',
  device: 'run.device', precision: 'run.precision', out: 'run.out', 'log-every': 'run.logEvery', 'checkpoint-every': 'run.checkpointEvery',
  'preview-every': 'run.previewEvery',
};

function field(path: string): FieldSpec {
  const spec = path.startsWith('controlnet.') ? fieldAt(CONTROLNET_SCHEMA, path.slice('controlnet.'.length)) : fieldAt(TRAIN_SCHEMA, path);
  // A ControlNet's method defaults to full (resolveControlNetConfig), not the trainer's diff-tuning.
  return path === 'method' ? { type: 'enum', values: ['full', 'diff-tuning'], default: 'full', help: spec.help } : spec;
}

export async function runControlNet(argv: string[]): Promise<void> {
  const { rest, sets } = takeSets(argv);
  const spec: FlagSpec = {
    config: { type: 'string', default: '', help: 'JSON config file: trainer fields plus a "controlnet" section (see --help-config)' },
    resume: { type: 'boolean', default: false, help: 'continue from the newest checkpoint in the run folder' },
    'print-config': { type: 'boolean', default: false, help: 'print the resolved configs and exit' },
    'help-config': { type: 'boolean', default: false, help: 'list every config field with its default' },
    'skip-unknown': { ...SKIP_UNKNOWN_FLAG, help: `model.skipUnknown: ${SKIP_UNKNOWN_FLAG.help}` },
  };
  for (const [flag, path] of Object.entries(SHORTCUTS)) spec[flag] = schemaFlag(path, field(path));
  spec.set = SET_FLAG;
  const flags = parseFlags('controlnet', 'Train a DiT-ControlNet (the base DiT frozen) on an image folder with one condition: --method full (default) or diff-tuning.', spec, rest) as
    Record<string, string | boolean> | null;
  if (!flags) return;
  if (flags['help-config']) {
    console.log(`config fields (JSON file via --config, or --set path=value):\n${describeSchema(TRAIN_SCHEMA).join('\n')}\n` +
      `${describeSchema(CONTROLNET_SCHEMA, 'controlnet').join('\n')}`);
    return;
  }
  const overrides: [string, string][] = [];
  if (flags['skip-unknown']) overrides.push(['model.skipUnknown', 'true']);
  for (const [flag, field] of Object.entries(SHORTCUTS)) {
    if (typeof flags[flag] === 'string' && flags[flag] !== '') overrides.push([field, flags[flag] as string]);
  }
  const { train, controlnet } = resolveControlNetConfig({ file: (flags.config as string) || undefined, overrides: [...overrides, ...sets] });
  if (flags['print-config']) {
    console.log(JSON.stringify({ ...train, controlnet }, null, 2));
    return;
  }
  configureThreads();
  torch.manualSeed(train.run.seed);
  console.log(`${runSummary(train)}\n  controlnet: condition ${controlnet.condition}, blocks ${controlnet.blocks ?? 'half the depth'}`);
  checkRunFolder(train, Boolean(flags.resume));
  const r = await trainControlNet(train, controlnet, { resume: Boolean(flags.resume) });
  const conv = r.convergence;
  console.log(`done: ${r.steps} steps. EMA weights: ${r.modelFile}` +
    (conv ? `; convergence step ${conv.convergence_step ?? `none within ${r.steps}`} (threshold ${conv.threshold.toPrecision(4)}; ` +
      `${path.join(train.run.out, 'convergence.json')}, convergence.svg)` : ''));
}
