// One benchmark run in its own process (`node one-run.js JOB.json RESULT.json`): fine-tune the
// source model on the target's subsampled training set with the run's method, then sample the EMA
// weights and measure FID/KID against the eval split ('pretrained' runs skip the training). A
// process per run keeps a long benchmark's memory flat and lets a crash cost one run only. The
// trainer resumes from the run folder's last checkpoint, so a killed run continues where it was.
import * as fs from 'fs';
import * as path from 'path';
import { configureThreads } from '../../src/cli/threads';
import { ImageDataset } from '../../src/data/image-dataset';
import { ewcDistance } from '../../src/eval/ewc';
import { fisherOnBank, pretrainedAs, pretrainedConfig } from '../../src/eval/ewc-setup';
import { loadExtractor } from '../../src/eval/extractor';
import { DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, ReferenceSpec } from '../../src/eval/reference-stats';
import { DiT } from '../../src/models/dit';
import { loadDiT } from '../../src/models/dit-io';
import * as torch from '../../src/torch';
import { Device, Tensor } from '../../src/torch';
import { resolveConfig } from '../../src/tuning/config';
import { prepareInputs } from '../../src/tuning/setup';
import { Trainer } from '../../src/tuning/trainer';
import { writeFileAtomic } from '../../src/tuning/write-atomic';
import { readJsonFile, RunEwc, RunJob, RunOutcome } from './job';
import { trainerMethod } from './methods';
import { evalLabels, fidOfSamples, sampleModel, SamplingProtocol } from './sample-fid';
import { stratifiedSubsample } from './subsample';

/** The trainer config of a job (written to the run folder as config.json). */
export function jobConfig(job: RunJob) {
  if (job.spec.method === 'pretrained') throw new Error('a pretrained run has no training config');
  const m = trainerMethod(job.spec.method);
  return resolveConfig({
    values: {
      method: m.method,
      model: { ckpt: job.source, config: job.sourceConfig },
      data: { target: job.dataDir, split: 'train', bank: m.usesBank ? job.bankDir : null },
      labels: { mode: 'reuse' },
      objective: { tau: job.spec.tau ?? 1 },
      peft: { method: m.peft },
      optim: { batchSize: job.batch },
      ema: { decay: job.emaDecay },
      run: {
        steps: job.steps, seed: job.spec.seed, device: job.device, out: job.runDir,
        logEvery: Math.max(1, Math.floor(job.steps / 20)), checkpointEvery: Math.max(1, Math.ceil(job.steps / 4)),
        keepCheckpoints: 1, previewEvery: 0,
      },
    },
  });
}

export async function executeRun(job: RunJob, log: (m: string) => void): Promise<RunOutcome> {
  const device = job.device as Device;
  const ref: ReferenceSpec = { dir: job.dataDir, split: 'eval', splitSeed: DEFAULT_SPLIT_SEED, evalFraction: DEFAULT_EVAL_FRACTION };
  const protocol: SamplingProtocol = { samples: job.evalSamples, steps: job.evalSteps, cfg: job.cfg, batch: job.evalBatch, device };
  const labels = evalLabels(ref, job.evalSamples);
  const extractor = loadExtractor(job.extractor, { device });
  try {
    if (job.spec.method === 'pretrained') {
      const { model } = loadDiT(job.source, { configFile: job.sourceConfig ?? undefined, device });
      const started = Date.now();
      try {
        const samples = torch.noGrad(() => sampleModel(model.eval(), labels, job.spec.seed, protocol));
        const fid = await fidOfSamples(samples, ref, extractor, log);
        return { ...fid, trainImages: 0, bankItems: 0, trainSeconds: 0, evalSeconds: (Date.now() - started) / 1000, stepSeconds: 0 };
      } finally {
        model.dispose();
      }
    }

    const config = jobConfig(job);
    fs.mkdirSync(job.runDir, { recursive: true });
    writeFileAtomic(path.join(job.runDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    const inputs = await prepareInputs(config, log);
    const full = inputs.target;
    if (!(full instanceof ImageDataset)) throw new Error(`${job.dataDir}: expected an image folder target`);
    const positions = stratifiedSubsample(Array.from(full.labels.data() as BigInt64Array, Number), job.trainSize, job.subsetSeed);
    const target = full.subset(positions);
    full.dispose();
    writeFileAtomic(path.join(job.runDir, 'train-files.txt'), target.files.map((f) => path.relative(job.dataDir, f)).join('\n') + '\n');
    let bank = inputs.bank;
    if (bank) {
      if (!(bank instanceof ImageDataset)) throw new Error(`${job.bankDir}: expected a PNG bank`);
      if (bank.length < job.spec.bankSize) throw new Error(`${job.bankDir}: the bank has ${bank.length} items, the run replays ${job.spec.bankSize}`);
      const all = bank;
      bank = all.subset(Array.from({ length: job.spec.bankSize }, (_, i) => i));
      all.dispose();
    }
    log(`${job.id}: ${target.length} training images (${job.trainSize} asked) in ${target.classes.length} classes` +
      `${bank ? `, ${bank.length} bank items` : ''}; ${job.steps} steps, EMA ${job.emaDecay.toPrecision(6)}`);

    const trainer = new Trainer(config, { ...inputs, target, bank }, { resume: true, log, progress: false });
    const startStep = trainer.step;
    const trainStart = Date.now();
    try {
      await trainer.run();
    } finally {
      trainer.dispose();
    }
    const trainSeconds = (Date.now() - trainStart) / 1000;
    const stepsRun = job.steps - startStep;
    const evalStart = Date.now();
    const samples = torch.noGrad(() => trainer.ema.swapInto(trainer.model, () => sampleModel(trainer.model, labels, job.spec.seed, protocol)));
    const fid = await fidOfSamples(samples, ref, extractor, log);
    const evalSeconds = (Date.now() - evalStart) / 1000;
    const ewc = job.ewc ? await ewcOfRun(job, trainer.model, trainer.ema.stateDict(trainer.model), log) : undefined;
    const outcome: RunOutcome = {
      ...fid,
      trainImages: target.length,
      bankItems: bank?.length ?? 0,
      trainSeconds,
      evalSeconds,
      stepSeconds: stepsRun > 0 ? trainSeconds / stepsRun : 0,
      ...(ewc ? { ewc } : {}),
    };
    target.dispose();
    (bank as ImageDataset | null)?.dispose();
    return outcome;
  } finally {
    extractor.dispose();
  }
}

/** The EMA weights' EWC against the source: the source's Fisher on the bank, taken in the run's architecture. */
export async function ewcOfRun(job: RunJob, model: DiT, ema: Map<string, Tensor>, log: (m: string) => void): Promise<RunEwc> {
  const e = job.ewc!;
  const device = job.device as Device;
  const base = pretrainedConfig(job.source, job.sourceConfig);
  const source = pretrainedAs(job.source, base, model.config, { device });
  const started = Date.now();
  try {
    const fisher = await fisherOnBank(source, e.bankDir, { items: e.items, draws: e.draws, seed: e.seed, labels: 'null', modelFile: job.source, device });
    try {
      const r = ewcDistance(fisher, new Map(source.namedParameters()), ema);
      log(`${job.id}: EWC ${r.total.toPrecision(4)} against the source (Fisher on ${fisher.items} bank items, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
      return { items: fisher.items, draws: e.draws, total: r.total, changed: r.changed, meanOverChanged: r.meanOverChanged };
    } finally {
      for (const v of fisher.values.values()) v.dispose();
    }
  } finally {
    source.dispose();
  }
}

async function main(): Promise<void> {
  const [jobFile, resultFile] = process.argv.slice(2);
  if (!jobFile || !resultFile) throw new Error('usage: node one-run.js JOB.json RESULT.json');
  configureThreads();
  const job = readJsonFile<RunJob>(jobFile, 'run job');
  const outcome = await executeRun(job, (m) => console.log(`  ${m}`));
  writeFileAtomic(resultFile, JSON.stringify(outcome, null, 2) + '\n');
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`error: ${(e as Error).stack ?? e}`);
    process.exit(1);
  });
}
