// One demo fine-tuning run (full or diff-tuning) through the ordinary trainer, in OUT/runs/<method>.
// A run folder remembers what it was trained from (demo-key.txt: a hash of the whole trainer config,
// steps included, the source model, the training images and the bank); a finished run with the same key is reused, an
// interrupted one resumes from its last checkpoint, and any other content is replaced.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { readJsonl } from '../report/jsonl';
import * as torch from '../torch';
import { resolveConfig, TrainConfig } from '../tuning/config';
import { prepareInputs } from '../tuning/setup';
import { Trainer } from '../tuning/trainer';
import { writeFileAtomic } from '../tuning/write-atomic';
import { DemoSettings } from './settings';

export type DemoMethod = 'full' | 'diff-tuning';

export interface FinetuneRun {
  method: DemoMethod;
  dir: string;
  modelFile: string;
  config: TrainConfig;
  /** Whether the weights came from an earlier demo run with the same inputs. */
  cached: boolean;
  /** log.jsonl records. */
  log: Record<string, unknown>[];
}

/** The trainer config of one demo run. */
export function demoTrainConfig(s: DemoSettings, method: DemoMethod, o: { trainDir: string; bankDir: string; runDir: string }): TrainConfig {
  const f = s.finetune;
  return resolveConfig({
    values: {
      method,
      model: { ckpt: s.source },
      data: { target: o.trainDir, bank: method === 'diff-tuning' ? o.bankDir : null, split: 'all' },
      objective: { tau: f.tau },
      optim: { lr: f.lr, batchSize: f.batch, gradClip: f.gradClip },
      ema: { decay: f.emaDecay },
      run: {
        steps: f.steps, seed: s.seed, out: o.runDir,
        // ~30 points on the loss curves; a few checkpoints so an interrupted demo resumes.
        logEvery: Math.max(1, Math.floor(f.steps / 30)),
        checkpointEvery: Math.max(25, Math.ceil(f.steps / 4)),
        keepCheckpoints: 1,
        previewEvery: 0,
      },
    },
  });
}

function lastLoggedStep(logFile: string): number {
  if (!fs.existsSync(logFile)) return -1;
  const records = readJsonl(logFile);
  const last = records[records.length - 1]?.step;
  return typeof last === 'number' ? last : -1;
}

function disposeAll(tensors: torch.Tensor[]): void {
  for (const t of tensors) t.dispose();
}

/** Trains (or reuses, or resumes) one run; `identity` names everything besides the config the weights depend on. */
export async function demoFinetune(config: TrainConfig, identity: Record<string, string>, log: (m: string) => void): Promise<FinetuneRun> {
  const dir = config.run.out;
  const method = config.method as DemoMethod;
  const key = crypto.createHash('sha256').update(JSON.stringify({ config, ...identity })).digest('hex');
  const keyFile = path.join(dir, 'demo-key.txt');
  const modelFile = path.join(dir, 'model.safetensors');
  const logFile = path.join(dir, 'log.jsonl');
  const sameKey = fs.existsSync(keyFile) && fs.readFileSync(keyFile, 'utf8').trim() === key;
  if (sameKey && fs.existsSync(modelFile) && lastLoggedStep(logFile) === config.run.steps) {
    log(`    ${dir}: finished earlier with the same settings and inputs; reusing its weights`);
    return { method, dir, modelFile, config, cached: true, log: readJsonl(logFile) };
  }
  if (!sameKey && fs.existsSync(dir)) {
    log(`    ${dir}: holds a run with other settings or inputs; starting over`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(keyFile, key + '\n');
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');

  const inputs = await prepareInputs(config, (m) => log(`    ${m}`));
  const trainer = new Trainer(config, inputs, { resume: true, progress: true, log: (m) => log(`    ${m}`) });
  try {
    await trainer.run();
  } finally {
    trainer.dispose();
    disposeAll([...trainer.model.parameters(), ...trainer.model.namedBuffers().map(([, b]) => b), ...trainer.ema.shadow.values()]);
    for (const st of trainer.optimizer.stateDict().state.values()) disposeAll([...st.tensors.values()]);
    for (const src of [inputs.target, inputs.bank]) (src as { dispose?: () => void } | null)?.dispose?.();
  }
  return { method, dir, modelFile, config, cached: false, log: readJsonl(logFile) };
}
