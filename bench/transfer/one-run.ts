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
import { parseRefSpec, ReferenceSpec } from '../../src/eval/reference-stats';
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
      data: { target: job.dataDir, split: job.heldoutDir ? 'all' : 'train', bank: m.usesBank ? job.bankDir : null },
      labels: { mode: 'reuse' },
      objective: { tau: job.spec.tau ?? 1 },
      peft: { method: m.peft },
      optim: { batchSize: job.batch },
      ema: { decay: job.emaDecay },
      eval: job.curvePoints > 0
        ? { every: job.steps / job.curvePoints, samples: job.curveSamples, extractor: job.extractor, ref: referenceOf(job), steps: job.evalSteps, cfg: job.cfg, batch: job.evalBatch }
        : { every: 0 },
      run: {
        steps: job.steps, seed: job.spec.seed, device: job.device, out: job.runDir,
        logEvery: Math.max(1, Math.floor(job.steps / 20)), checkpointEvery: Math.max(1, Math.ceil(job.steps / 4)),
        keepCheckpoints: 1, previewEvery: 0,
      },
    },
  });
}

/** The FID reference: every held-out image, or the target's eval split. */
function referenceOf(job: RunJob): string {
  return job.heldoutDir ? `${job.heldoutDir}:all` : `${job.dataDir}:eval`;
}

/** The in-loop FIDs of a run's log.jsonl, one per step (the last record of a step wins: a resumed run logs again). */
export function curveOfLog(file: string, metric: string): [number, number][] {
  if (!fs.existsSync(file)) return [];
  const byStep = new Map<number, number>();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a torn last line of a killed run
    }
    if (typeof r.step === 'number' && typeof r[metric] === 'number') byStep.set(r.step, r[metric] as number);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]);
}

export async function executeRun(job: RunJob, log: (m: string) => void): Promise<RunOutcome> {
  const device = job.device as Device;
  const ref: ReferenceSpec = parseRefSpec(referenceOf(job));
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
        const cfg1 = job.finalVariants
          ? await fidOfSamples(torch.noGrad(() => sampleModel(model, labels, job.spec.seed, { ...protocol, cfg: 1 })), ref, extractor, log)
          : undefined;
        return { ...fid, ...(cfg1 ? { cfg1 } : {}), trainImages: 0, bankItems: 0, trainSeconds: 0, evalSeconds: (Date.now() - started) / 1000, stepSeconds: 0 };
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
    // A held-out run's data folder is its training subset already.
    const positions = job.heldoutDir
      ? Array.from({ length: full.length }, (_, i) => i)
      : stratifiedSubsample(Array.from(full.labels.data() as BigInt64Array, Number), job.trainSize, job.subsetSeed);
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
    const emaSamples = (cfg: number) => torch.noGrad(() => trainer.ema.swapInto(trainer.model, () => sampleModel(trainer.model, labels, job.spec.seed, { ...protocol, cfg })));
    const fid = await fidOfSamples(emaSamples(job.cfg), ref, extractor, log);
    let variants: Pick<RunOutcome, 'cfg1' | 'raw'> = {};
    if (job.finalVariants) {
      const cfg1 = await fidOfSamples(emaSamples(1), ref, extractor, log);
      trainer.model.eval();
      const raw = await fidOfSamples(torch.noGrad(() => sampleModel(trainer.model, labels, job.spec.seed, protocol)), ref, extractor, log);
      variants = { cfg1, raw };
    }
    const curve = job.curvePoints > 0 ? curveOfLog(path.join(job.runDir, 'log.jsonl'), fid.metric) : undefined;
    const evalSeconds = (Date.now() - evalStart) / 1000;
    const ewc = job.ewc ? await ewcOfRun(job, trainer.model, trainer.ema.stateDict(trainer.model), log) : undefined;
    const outcome: RunOutcome = {
      ...fid,
      ...variants,
      ...(curve ? { curve } : {}),
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
