// The one trainer behind `finetune` and `pretrain`: every method of the paper is a configuration
// of it (see objective.ts). A step draws a target batch and (for the bank methods) a replay batch
// from separate iterators, draws their timesteps from their own laws, runs ONE forward over the
// concatenation (replay labels set to the null label), combines the losses, and updates AdamW and
// the EMA. Around that: accumulation, clipping, bf16 autocast, a non-finite guard with rollback,
// atomic checkpoints that resume bit for bit, logs, previews.
//
// Determinism: torch's global generators draw timesteps, noise and label dropout; the data
// iterators draw from their own seeded streams (data cursors); previews use private generators.
// All of these are in the checkpoint, so a resumed run continues exactly.
import * as fs from 'fs';
import * as path from 'path';
import { BatchIterator } from '../data/batch-iterator';
import { createDiffusion } from '../diffusion/create';
import { SpacedDiffusion } from '../diffusion/spaced-diffusion';
import { DiT, modelArgs } from '../models/dit';
import * as torch from '../torch';
import { Device, Generator, Tensor } from '../torch';
import { checkpointName, listCheckpoints, loadTrainingState, pruneCheckpoints, saveTrainingState } from './checkpoint';
import { configDiff, configHash, TrainConfig } from './config';
import { Ema } from './ema';
import { exportFinetuned } from './export';
import { buildObjective, combineLosses, drawTimesteps, Objective, splitBatch } from './objective';
import { inLoopEval } from '../eval/in-loop';
import { ImageSink, Previewer, sampleWithSeed } from './previews';
import { learningRate, RunInputs } from './setup';
import { scheduledLr } from './lr-schedule';
import { TrainLog } from './train-log';

/** Processes of a data-parallel run; a single process is rank 0 of 1. */
export interface World {
  rank: number;
  size: number;
  /** Averages gradients across processes after backward (data parallelism); absent for one process. */
  allReduceGradients?(params: Tensor[]): void;
}

export interface TrainerHooks {
  /** Called before each optimizer step (tests inject faults here). */
  beforeStep?(step: number, trainer: Trainer): void;
  /** Called after each applied step, after its logs, previews and evaluation, before its checkpoint (in-loop metrics). */
  afterStep?(step: number, trainer: Trainer): void;
  /** Called after a checkpoint is complete on disk. */
  afterCheckpoint?(step: number, file: string): void;
}

/**
 * A model with an input besides (x, t, y), trained by the same loop: ControlNet's condition image.
 * Its batch sources pack that input after the image channels of x, so data order and flips treat
 * both alike; the plugin splits it off before the image is noised and hands it to the model.
 */
export interface ModelPlugin {
  /** x as the sources return it -> the image to diffuse and the extra input (same batch order). */
  split(x: Tensor): { x: Tensor; extra: Tensor };
  /** The model's output for the noised image with the extra input. */
  forward(xt: Tensor, t: Tensor, y: Tensor, extra: Tensor): Tensor;
  /** Preview images in place of the class-label grids (called with the EMA weights in the model, in eval mode). */
  preview?(step: number, sink: ImageSink): void;
  /** Writes the final model file (called with the EMA weights in the model) and returns its path. */
  exportModel?(): string;
}

export interface TrainerOptions {
  hooks?: TrainerHooks;
  /** A model with an extra input (see ModelPlugin); absent for class-conditional DiT training. */
  plugin?: ModelPlugin;
  world?: World;
  /** Continue from the newest checkpoint in run.out/checkpoints when there is one. */
  resume?: boolean;
  log?: (msg: string) => void;
  /** Show progress: a bar on a terminal, a plain line every run.progressEvery seconds otherwise (default true). */
  progress?: boolean;
  /** What `run.precision: auto` measures on a CPU (replaceable in tests). */
  precisionProbe?: () => torch.PrecisionProbe;
}

export interface StepResult {
  /** Whether the update was applied (false: a non-finite loss or gradient skipped it). */
  applied: boolean;
  loss: number;
  target: number;
  replay: number | null;
  gradNorm: number;
}

export class Trainer {
  readonly model: DiT;
  readonly ema: Ema;
  readonly optimizer: torch.optim.AdamW;
  readonly diffusion: SpacedDiffusion;
  readonly objective: Objective;
  readonly device: Device;
  readonly hash: string;
  readonly params: Tensor[];
  readonly split: { target: number; replay: number };
  /** run.precision resolved ('auto' measured once; a resumed run keeps its checkpoint's choice). */
  precision!: torch.Precision;
  step = 0;
  private readonly targetIt: BatchIterator;
  private readonly bankIt: BatchIterator | null;
  private readonly nullLabel: number;
  private readonly world: World;
  private readonly hooks: TrainerHooks;
  private readonly plugin: ModelPlugin | null;
  private readonly logMsg: (msg: string) => void;
  private readonly trainLog: TrainLog;
  private readonly previewer: Previewer | null;
  private readonly checkpointDir: string;
  private nan = { consecutive: 0, skipped: 0, rollbacks: 0 };
  private evalDiffusion: SpacedDiffusion | null = null;

  constructor(readonly config: TrainConfig, readonly inputs: RunInputs, o: TrainerOptions = {}) {
    const c = config;
    this.world = o.world ?? { rank: 0, size: 1 };
    this.hooks = o.hooks ?? {};
    this.plugin = o.plugin ?? null;
    this.logMsg = o.log ?? ((m) => console.log(m));
    this.device = c.run.device as Device;
    this.hash = configHash(c);
    this.model = inputs.model.to(this.device);
    this.params = this.model.parameters().filter((p) => p.requiresGrad);
    if (!this.params.length) throw new Error('nothing to train: no parameter requires a gradient');
    // EMA from the pretrained weights, as the reference (evaluation uses the EMA).
    this.ema = new Ema(this.model, c.ema.decay);
    this.optimizer = new torch.optim.AdamW(this.params, {
      lr: learningRate(c), weightDecay: c.optim.weightDecay, betas: c.optim.betas as [number, number], eps: c.optim.eps,
    });
    this.diffusion = createDiffusion({ timestepRespacing: '', learnSigma: this.model.config.learnSigma });
    this.objective = buildObjective(c, this.diffusion.alphasCumprod);
    this.split = splitBatch(this.objective, c.optim.batchSize);
    this.nullLabel = this.model.config.numClasses;
    if (this.split.replay > 0 && !inputs.bank) throw new Error(`method "${c.method}" needs a knowledge bank (data.bank)`);
    this.targetIt = new BatchIterator(inputs.target, {
      batchSize: this.split.target, seed: c.run.seed * 2 + 0, flip: inputs.flipTarget, dropLast: true,
    });
    this.bankIt = this.split.replay > 0
      ? new BatchIterator(inputs.bank!, { batchSize: this.split.replay, seed: c.run.seed * 2 + 1, flip: inputs.flipBank, dropLast: true })
      : null;
    if (inputs.target.length < this.split.target) {
      throw new Error(`data.target has ${inputs.target.length} images, fewer than the ${this.split.target} target samples of one batch`);
    }
    this.checkpointDir = path.join(c.run.out, 'checkpoints');
    const writer = this.world.rank === 0;
    this.trainLog = new TrainLog(c.run.out, {
      enabled: writer, total: c.run.steps, numTimesteps: this.objective.numTimesteps, progress: o.progress,
      progressSeconds: c.run.progressEvery,
    });
    this.previewer = writer && !this.plugin?.preview && c.run.previewEvery > 0 && [1, 3].includes(this.model.config.inChannels)
      ? new Previewer(c.run.out, { count: c.run.previewCount, numClasses: inputs.classes.length, steps: c.run.previewSteps, cfg: c.run.previewCfg, seed: c.run.seed })
      : null;
    // A fresh run starts its random streams from the seed (a resumed one from the checkpoint's).
    torch.manualSeed(c.run.seed);
    if (this.device.startsWith('cuda')) torch.Generator.default(this.device).manualSeed(c.run.seed);
    if (o.resume) this.resumeFromLatest();
    // After the resume: 'auto' measures only for a fresh run (a resumed one took its checkpoint's choice).
    if (!this.precision) {
      const chosen = torch.resolvePrecision(c.run.precision, this.device, o.precisionProbe);
      this.precision = chosen.precision;
      if (c.run.precision === 'auto') this.logMsg(`precision: ${chosen.precision} (${chosen.reason})`);
    }
  }

  /** One micro-batch: forward over target + replay, weighted losses, backward of loss / accumulate. */
  private microStep(scale: number): { loss: number; target: number; replay: number | null; t: number[]; perSample: number[] } {
    return torch.scope(() => {
      const { target: nt, replay: nr } = this.split;
      const tb = this.targetIt.next();
      const rb = this.bankIt ? this.bankIt.next() : null;
      const dt = drawTimesteps(this.objective, this.objective.targetLaw, nt);
      const dr = rb ? drawTimesteps(this.objective, this.objective.replayLaw!, nr) : null;
      let x = (rb ? torch.cat([tb.x, rb.x], 0) : tb.x).to({ device: this.device });
      let extra: Tensor | null = null;
      if (this.plugin) ({ x, extra } = this.plugin.split(x));
      // Replay samples train the unconditional branch: their labels become the null label.
      const y = (rb ? torch.cat([tb.y, torch.full([nr], this.nullLabel, { dtype: 'int64' })], 0) : tb.y).to({ device: this.device });
      const t = (dr ? torch.cat([dt.t, dr.t], 0) : dt.t).to({ device: this.device });
      const w = dt.weights ? (dr ? torch.cat([dt.weights, dr.weights!], 0) : dt.weights).to({ device: this.device }) : null;
      const forward = (xt: Tensor, tt: Tensor, k: { y: Tensor }): Tensor =>
        (this.plugin ? this.plugin.forward(xt, tt, k.y, extra!) : this.model.forward(xt, tt, k.y));
      // bf16: autocast around the forward and the loss; weights, gradients, AdamW state and EMA stay float32.
      const terms = torch.inPrecision(this.precision, this.device, () => this.diffusion.trainingLosses(forward, x, t, { modelKwargs: { y } }));
      const combined = combineLosses(this.objective, terms, t, w, nt);
      combined.loss.div(scale).backward();
      this.model.backwardCheckpointed(); // second phase of model.gradCheckpointing; nothing to do when it is off
      return {
        loss: combined.loss.item(),
        target: combined.targetMean.item(),
        replay: combined.replayMean ? combined.replayMean.item() : null,
        t: t.toArray() as number[],
        perSample: combined.perSample.toArray() as number[],
      };
    });
  }

  /** One optimizer step (accumulating micro-batches); skips the update on a non-finite loss or gradient. */
  trainStep(): StepResult {
    this.hooks.beforeStep?.(this.step, this);
    const k = this.config.optim.accumulate;
    let loss = 0; let target = 0; let replay: number | null = null;
    for (let i = 0; i < k; i++) {
      const m = this.microStep(k);
      loss += m.loss / k;
      target += m.target / k;
      if (m.replay !== null) replay = (replay ?? 0) + m.replay / k;
      this.trainLog.observeTimesteps(m.t, m.perSample);
    }
    this.world.allReduceGradients?.(this.params);
    const gradNorm = torch.optim.clipGradNorm_(this.params, this.config.optim.gradClip ?? Infinity);
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      this.optimizer.zeroGrad();
      this.onNonFinite(loss, gradNorm);
      return { applied: false, loss, target, replay, gradNorm };
    }
    this.nan.consecutive = 0;
    const o = this.config.optim;
    this.optimizer.setLr(scheduledLr(learningRate(this.config), o.schedule, this.step, this.config.run.steps, o.warmupSteps));
    this.optimizer.step();
    this.optimizer.zeroGrad();
    this.ema.update(this.model);
    this.step += 1;
    return { applied: true, loss, target, replay, gradNorm };
  }

  private onNonFinite(loss: number, gradNorm: number): void {
    this.nan.consecutive += 1;
    this.nan.skipped += 1;
    this.logMsg(`step ${this.step + 1}: non-finite ${Number.isFinite(loss) ? `gradient norm (${gradNorm})` : `loss (${loss})`}; update skipped ` +
      `(${this.nan.consecutive} in a row, ${this.nan.skipped} in all)`);
    if (this.nan.consecutive < this.config.run.nanRollback) return;
    const last = listCheckpoints(this.checkpointDir).pop();
    if (!last) throw new Error(`${this.nan.consecutive} non-finite steps in a row and no checkpoint to roll back to (lower optim.lr, or set optim.gradClip)`);
    if (this.nan.rollbacks >= 3) throw new Error(`training diverged: still non-finite after ${this.nan.rollbacks} rollbacks (lower optim.lr, or set optim.gradClip)`);
    const counters = { ...this.nan, consecutive: 0, rollbacks: this.nan.rollbacks + 1 };
    this.restore(last.file);
    this.nan = counters;
    // The same random stream would walk into the same failure: continue on a fresh one.
    torch.manualSeed(BigInt(this.config.run.seed) + 1_000_003n * BigInt(this.nan.rollbacks));
    this.logMsg(`rolled back to step ${this.step} (${last.file}); rollback ${this.nan.rollbacks}, reseeded`);
  }

  private rngState(): Map<string, Tensor> {
    const rng = new Map<string, Tensor>([['cpu', Generator.default('cpu').getState()]]);
    if (this.device.startsWith('cuda')) rng.set('cuda', Generator.default(this.device).getState());
    return rng;
  }

  /** Writes a checkpoint of the current state (atomic: temp file, then rename). */
  saveCheckpoint(): string {
    const file = path.join(this.checkpointDir, checkpointName(this.step));
    if (this.world.rank !== 0) return file;
    const rng = this.rngState();
    const model = this.model.stateDict();
    saveTrainingState(file, {
      step: this.step,
      configHash: this.hash,
      model,
      ema: this.ema.shadow,
      optimizer: this.optimizer.stateDict(),
      rng,
      progress: {
        target: this.targetIt.state(), bank: this.bankIt?.state() ?? null, nan: this.nan, modelArgs: modelArgs(this.model.config),
        precision: this.precision,
        ...this.trainLog.progress(),
      },
    });
    for (const t of rng.values()) t.dispose();
    pruneCheckpoints(this.checkpointDir, this.config.run.keepCheckpoints);
    this.hooks.afterCheckpoint?.(this.step, file);
    return file;
  }

  private restore(file: string): void {
    const s = loadTrainingState(file);
    if (s.configHash !== this.hash) {
      let diff = '';
      const saved = path.join(this.config.run.out, 'config.json');
      if (fs.existsSync(saved)) {
        try {
          diff = configDiff(JSON.parse(fs.readFileSync(saved, 'utf8')), this.config).join('; ');
        } catch { /* the hash mismatch alone is reported */ }
      }
      throw new Error(`${file}: the checkpoint belongs to another configuration${diff ? ` (${diff})` : ''}; ` +
        'start a new run folder, or restore the settings it was made with');
    }
    torch.noGrad(() => {
      this.model.loadStateDict(s.model, { what: file });
      for (const [name, shadow] of this.ema.shadow) {
        const saved = s.ema.get(name);
        if (!saved) throw new Error(`${file}: EMA tensor '${name}' is missing`);
        shadow.copy_(saved);
      }
    });
    this.optimizer.loadStateDict(s.optimizer);
    Generator.default('cpu').setState(s.rng.get('cpu')!);
    if (this.device.startsWith('cuda') && s.rng.has('cuda')) Generator.default(this.device).setState(s.rng.get('cuda')!);
    const p = s.progress as { target: { epoch: number; position: number }; bank: { epoch: number; position: number } | null; nan?: Trainer['nan']; precision?: torch.Precision };
    // 'auto' may measure differently now; the run continues in the precision it started with.
    if (this.config.run.precision === 'auto' && p.precision && p.precision !== this.precision) {
      this.precision = p.precision;
      this.logMsg(`precision: ${p.precision} (auto, kept from ${file})`);
    }
    this.targetIt.setState(p.target);
    if (this.bankIt && p.bank) this.bankIt.setState(p.bank);
    if (p.nan) this.nan = { ...p.nan };
    this.trainLog.restore(s.progress);
    this.step = s.step;
    for (const m of [s.model, s.ema, s.rng]) for (const t of m.values()) t.dispose();
    for (const st of s.optimizer.state.values()) for (const t of st.tensors.values()) t.dispose();
  }

  private resumeFromLatest(): void {
    const last = listCheckpoints(this.checkpointDir).pop();
    if (!last) return;
    this.restore(last.file);
    this.trainLog.rewind(this.step);
    this.logMsg(`resumed from ${last.file} at step ${this.step}`);
  }

  /** Sample previews from the EMA weights (the pretrained model at step 0). */
  private preview(): void {
    if (this.plugin?.preview) {
      if (this.world.rank !== 0 || this.config.run.previewEvery === 0) return;
      this.ema.swapInto(this.model, () => this.plugin!.preview!(this.step, this.trainLog));
      return;
    }
    if (!this.previewer) return;
    this.ema.swapInto(this.model, () => this.previewer!.render(this.model, this.step, this.trainLog));
  }

  /** An extra record (an in-loop metric of a hook or plugin) in the run's log.jsonl and TensorBoard. */
  logMetric(step: number, values: Record<string, number>): void {
    if (this.world.rank === 0) this.trainLog.metric(step, values);
  }

  /** FID of the EMA model's samples against the reference statistics, logged at this step. */
  evaluate(): { fid: number; name: string } | null {
    const ev = this.inputs.evaluator;
    if (!ev || this.world.rank !== 0) return null;
    const c = this.config.eval;
    const diffusion = this.evalDiffusion ??= createDiffusion({ timestepRespacing: `ddim${c.steps}` });
    const K = this.inputs.classes.length;
    let drawn = 0;
    const r = this.ema.swapInto(this.model, () => inLoopEval({
      extractor: ev.extractor,
      refStats: ev.refStats,
      n: c.samples,
      batchSize: c.batch,
      warn: (m) => this.logMsg(`warning: ${m}`),
      sample: (k) => {
        // Labels cycle over the target classes; the noise of each chunk is fixed by its offset.
        const labels = Array.from({ length: k }, (_, i) => (drawn + i) % K);
        const x = sampleWithSeed(this.model, diffusion, { labels, seed: this.config.run.seed * 1_000_003 + drawn + 5, cfg: c.cfg, precision: c.precision });
        drawn += k;
        return torch.scope(() => x.mul(127.5).add(128).clamp(0, 255).to({ dtype: 'uint8' }));
      },
    }));
    this.trainLog.metric(this.step, { [r.name]: r.fid });
    this.logMsg(`step ${this.step}: ${r.name} ${r.fid.toFixed(3)} (${r.n} samples against ${ev.ref})`);
    return r;
  }

  /** One step with everything scheduled around it: logs, previews, checkpoints. */
  advance(): StepResult {
    const c = this.config;
    const before = this.step;
    const r = this.trainStep();
    this.trainLog.observeStep(r, this.split.target + this.split.replay, c.optim.accumulate, this.optimizer.paramGroups[0].options.lr as number, this.nan);
    if (this.step === before) return r;
    if (this.step % c.run.logEvery === 0 || this.step === c.run.steps) this.trainLog.flush(this.step, this.device);
    if (c.run.previewEvery > 0 && this.step % c.run.previewEvery === 0) {
      this.preview();
      this.model.train();
    }
    if (c.eval.every > 0 && this.step % c.eval.every === 0) {
      this.evaluate();
      this.model.train();
    }
    if (this.hooks.afterStep) {
      this.hooks.afterStep(this.step, this);
      this.model.train();
    }
    if (this.step % c.run.checkpointEvery === 0 || this.step === c.run.steps) this.saveCheckpoint();
    return r;
  }

  /** Trains to run.steps, writing logs, previews and checkpoints; returns the final EMA state dict file. */
  async run(): Promise<{ steps: number; modelFile: string | null }> {
    const c = this.config;
    this.logMsg(`training ${this.model.numParameters(true)} of ${this.model.numParameters()} parameters; ` +
      `batch ${this.split.target} target + ${this.split.replay} replay` +
      `${c.optim.accumulate > 1 ? ` x ${c.optim.accumulate} accumulated` : ''}; steps ${this.step} -> ${c.run.steps}`);
    if (this.step === 0) this.preview();
    this.trainLog.start(this.step);
    this.model.train();
    while (this.step < c.run.steps) {
      this.advance();
      // Let timers, signals and I/O callbacks run between steps.
      if (this.step % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    this.trainLog.finish(this.step);
    return { steps: this.step, modelFile: this.world.rank === 0 ? this.exportModel() : null };
  }

  /** The EMA weights as a plain model file (LoRA merged) that `difftune sample` loads. */
  private exportModel(): string {
    if (this.plugin?.exportModel) return this.ema.swapInto(this.model, () => this.plugin!.exportModel!());
    return exportFinetuned(this.config, this.model, this.ema);
  }

  dispose(): void {
    this.trainLog.close();
  }
}
