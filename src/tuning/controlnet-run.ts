// One ControlNet training run on the shared trainer: the DiT-ControlNet plugged in (ModelPlugin),
// the convergence detector as an afterStep hook (its distances go to the run's log.jsonl as
// `convergence_distance`), previews of the fixed conditions, the EMA, checkpoints and resume as for
// any run. Writes RUN/controlnet.json (the ControlNet settings), RUN/convergence.json and
// RUN/convergence.svg, and the final EMA weights as RUN/model.safetensors (+ .json).
import * as fs from 'fs';
import * as path from 'path';
import { hashSeed, seededPermutation } from '../data/batch-iterator';
import { readJsonObject } from '../models/json-file';
import { readJsonl } from '../report/jsonl';
import * as torch from '../torch';
import { TrainConfig } from './config';
import { CONTROLNET_IDENTITY, ControlNetSettings } from './controlnet-config';
import { controlNetPlugin, prepareControlNetInputs } from './controlnet-setup';
import { ConvergenceDetector, ConvergenceSummary } from './convergence';
import { Trainer, TrainerHooks } from './trainer';
import { writeFileAtomic } from './write-atomic';

export interface ControlNetRunOptions {
  resume?: boolean;
  log?: (m: string) => void;
  progress?: boolean;
  /** Extra trainer hooks (tests); the detector's afterStep runs first. */
  hooks?: TrainerHooks;
}

export interface ControlNetRunResult {
  steps: number;
  modelFile: string | null;
  /** null when controlnet.evalEvery is 0. */
  convergence: ConvergenceSummary | null;
  trainSeconds: number;
  trainer: Trainer;
}

const HELD_OUT_STREAM = 21;

/** Refuses to continue a run folder made with other ControlNet settings (the trainer checks its own config). */
function checkSettingsFile(file: string, cn: ControlNetSettings, resume: boolean): void {
  if (!resume || !fs.existsSync(file)) return;
  const saved = readJsonObject(file);
  const diff = CONTROLNET_IDENTITY.filter((k) => JSON.stringify(saved[k] ?? null) !== JSON.stringify(cn[k]))
    .map((k) => `controlnet.${k}: ${JSON.stringify(saved[k])} -> ${JSON.stringify(cn[k])}`);
  if (diff.length) throw new Error(`${file}: the run was made with other ControlNet settings (${diff.join('; ')}); start a new run folder`);
}

export async function trainControlNet(c: TrainConfig, cn: ControlNetSettings, o: ControlNetRunOptions = {}): Promise<ControlNetRunResult> {
  const log = o.log ?? console.log;
  const out = c.run.out;
  const settingsFile = path.join(out, 'controlnet.json');
  checkSettingsFile(settingsFile, cn, Boolean(o.resume));
  const prepared = await prepareControlNetInputs(c, cn, log);
  const { model, heldOut } = prepared;

  // The fixed evaluation set: evalSamples held-out images chosen by evalSeed (the same for every run).
  const measuring = cn.evalEvery > 0 || c.run.previewEvery > 0;
  let detector: ConvergenceDetector | null = null;
  if (measuring) {
    const order = Array.from(seededPermutation(heldOut.length, hashSeed(cn.evalSeed, HELD_OUT_STREAM)));
    const picked = order.slice(0, Math.min(cn.evalSamples, heldOut.length));
    const b = heldOut.batch(picked);
    const labels = Array.from(b.y.data() as BigInt64Array, (v) => prepared.evalLabel(Number(v)));
    detector = new ConvergenceDetector({
      kind: cn.condition, images: b.x, labels, seed: cn.evalSeed, steps: cn.evalSteps, fraction: cn.thresholdFraction, learnSigma: model.config.learnSigma,
    });
    b.x.dispose();
    b.y.dispose();
    log(`convergence metric: ${picked.length} held-out ${cn.condition} conditions, DDIM ${cn.evalSteps} steps, ${cn.evalWeights} weights; ` +
      `real pairs: matched ${detector.reference.matched.toPrecision(4)}, shuffled ${detector.reference.shuffled.toPrecision(4)} ` +
      `-> threshold ${detector.threshold.toPrecision(4)}`);
  }
  heldOut.dispose();

  const summaryFile = path.join(out, 'convergence.json');
  let trainer: Trainer | null = null;
  const measure = (step: number): void => {
    if (!detector || !trainer) return;
    const tr = trainer;
    const run = (): number => {
      const wasTraining = model.training;
      model.eval();
      try {
        const r = detector!.measure(model, step);
        r.samples.dispose();
        return r.distance;
      } finally {
        model.train(wasTraining);
      }
    };
    const d = cn.evalWeights === 'ema' ? tr.ema.swapInto(model, run) : torch.noGrad(run);
    tr.logMetric(step, { convergence_distance: d, convergence_threshold: detector.threshold });
    writeFileAtomic(summaryFile, JSON.stringify(detector.summary(), null, 2) + '\n');
    detector.plot(path.join(out, 'convergence.svg'));
    log(`step ${step}: condition distance ${d.toPrecision(4)} (threshold ${detector.threshold.toPrecision(4)})` +
      `${detector.convergenceStep === step ? ' -- converged' : ''}`);
  };
  const hooks: TrainerHooks = {
    ...o.hooks,
    afterStep: (step, tr) => {
      if (cn.evalEvery > 0 && step % cn.evalEvery === 0) measure(step);
      o.hooks?.afterStep?.(step, tr);
    },
  };
  trainer = new Trainer(c, prepared.inputs, {
    resume: o.resume, log, progress: o.progress, hooks,
    plugin: controlNetPlugin(model, { out, method: c.method, preview: detector, previewCount: c.run.previewCount }),
  });
  // Saved once the trainer accepted the folder (a resume compares against the old config.json).
  writeFileAtomic(path.join(out, 'config.json'), JSON.stringify(c, null, 2) + '\n');
  writeFileAtomic(settingsFile, JSON.stringify(cn, null, 2) + '\n');
  if (detector && cn.evalEvery > 0) {
    // A resumed run keeps the points measured up to its checkpoint (later ones are measured again).
    const logFile = path.join(out, 'log.jsonl');
    if (trainer.step > 0 && fs.existsSync(logFile)) {
      for (const r of readJsonl(logFile)) {
        if (typeof r.convergence_distance === 'number' && typeof r.step === 'number' && r.step <= trainer.step) detector.record(r.step, r.convergence_distance);
      }
    }
    if (trainer.step === 0) measure(0);
  }
  const started = Date.now();
  let result: { steps: number; modelFile: string | null };
  try {
    result = await trainer.run();
  } finally {
    trainer.dispose();
  }
  const trainSeconds = (Date.now() - started) / 1000;
  const convergence = detector?.summary() ?? null;
  if (convergence && cn.evalEvery > 0) writeFileAtomic(summaryFile, JSON.stringify(convergence, null, 2) + '\n');
  detector?.dispose();
  if (convergence) {
    log(convergence.convergence_step === null
      ? `no convergence within ${result.steps} steps (distance never under ${convergence.threshold.toPrecision(4)})`
      : `sudden convergence at step ${convergence.convergence_step} (first evaluation under ${convergence.threshold.toPrecision(4)})`);
  }
  return { ...result, convergence: cn.evalEvery > 0 ? convergence : null, trainSeconds, trainer };
}

/** Frees what a finished run holds (model, optimizer state, EMA, data), for callers that run many in one process. */
export function disposeControlNetRun(r: ControlNetRunResult): void {
  const tr = r.trainer;
  for (const src of [tr.inputs.target, tr.inputs.bank]) {
    const images = (src as { images?: { dispose?: () => void } } | null)?.images;
    images?.dispose?.();
  }
  // Optimizer state first: it is keyed by the parameters freed next. (Gradients are already null after each step.)
  for (const st of tr.optimizer.stateDict().state.values()) for (const t of st.tensors.values()) t.dispose();
  for (const t of tr.ema.shadow.values()) t.dispose();
  for (const t of tr.model.stateDict().values()) t.dispose();
}
