// `difftune export`: model weights out of a training checkpoint, as a plain model file
// (X.safetensors + X.json) that `sample`, `bank` and `finetune` load: the EMA (default, what the
// run's own export writes) or the raw trained weights (e.g. a short from-scratch run whose EMA
// still averages in its first, random steps).
import * as fs from 'fs';
import * as path from 'path';
import { configFromModelArgs, DiT, DiTConfig } from '../models/dit';
import { readDiTConfig, saveDiT } from '../models/dit-io';
import { loadTrainingState } from '../tuning/checkpoint';
import { parseFlags } from './args';
import { checkWritableDir } from './writable';

const FLAGS = {
  checkpoint: { type: 'string', help: 'a training checkpoint (RUN/checkpoints/step-N.safetensors)' },
  config: { type: 'string', default: '', help: "model config JSON (default: the one the checkpoint records, else RUN/model.json)" },
  weights: { type: 'string', default: 'ema', help: "'ema' or 'model' (the raw trained weights)" },
  out: { type: 'string', help: 'output .safetensors (a .json config is written beside it)' },
  dtype: { type: 'string', default: 'float32', help: "stored precision: 'float32', or 'float16' / 'bfloat16' for a file half the size (loaded back as float32)" },
} as const;

export async function runExport(argv: string[]): Promise<void> {
  const flags = parseFlags('export', 'Write the EMA or raw weights of a training checkpoint as a model file.', FLAGS, argv);
  if (!flags) return;
  if (flags.weights !== 'ema' && flags.weights !== 'model') throw new Error(`--weights must be 'ema' or 'model', got '${flags.weights}'`);
  checkWritableDir('out', path.dirname(path.resolve(flags.out)));
  const s = loadTrainingState(flags.checkpoint);
  const run = path.dirname(path.dirname(path.resolve(flags.checkpoint)));
  const sibling = path.join(run, 'model.json');
  const saved = s.progress.modelArgs as Record<string, unknown> | undefined;
  let config: DiTConfig;
  if (flags.config) config = readDiTConfig(flags.config);
  else if (saved) config = configFromModelArgs(saved);
  else if (fs.existsSync(sibling)) config = readDiTConfig(sibling);
  else throw new Error(`${flags.checkpoint}: holds no model config and ${sibling} does not exist; pass --config with the model's constructor arguments`);
  const sd = new Map(s.model);
  if (flags.weights === 'ema') for (const [k, t] of s.ema) sd.set(k, t);
  const model = new DiT(config, { initialize: false });
  model.loadStateDict(sd, { what: flags.checkpoint });
  if (flags.dtype !== 'float32') {
    if (flags.dtype !== 'float16' && flags.dtype !== 'bfloat16') throw new Error(`--dtype must be float32, float16 or bfloat16, got '${flags.dtype}'`);
    model.to(flags.dtype);
  }
  const meta = { source_checkpoint: path.basename(flags.checkpoint), step: String(s.step), weights: flags.weights, dtype: flags.dtype };
  // A reduced-precision file leaves out pos_embed: it is a fixed function of the config, which loadDiT recomputes exactly.
  saveDiT(flags.out, model, meta, undefined, flags.dtype === 'float32' ? [] : ['pos_embed']);
  console.log(`wrote ${flags.out} (${flags.weights} weights of step ${s.step}, ${flags.dtype})`);
}
