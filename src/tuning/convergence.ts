// The sudden-convergence detector (the paper's ControlNet metric): every N steps the ControlNet
// samples fixed held-out conditions with fixed noise (DDIM, few steps), the condition is extracted
// again from each sample, and the mean squared difference to the input condition is logged. The
// convergence step is the first evaluation whose distance falls under the threshold.
//
// Threshold rule (model-independent, so every method and seed of a condition is held to the same
// line): on the real held-out images, `matched` is the distance between each image's condition and
// the one extracted from the image itself (0 for deterministic extractors), `shuffled` the distance
// between an image's condition and another image's (what a model that draws realistic images but
// ignores the condition scores); threshold = matched + fraction x (shuffled - matched), fraction 0.5
// by default: samples are at least twice as close to their condition as chance.
import * as path from 'path';
import { conditionDistance, ConditionKind, extractCondition } from '../data/conditions';
import { createDiffusion } from '../diffusion/create';
import { SpacedDiffusion } from '../diffusion/spaced-diffusion';
import { DiTControlNet } from '../models/dit-controlnet';
import { plotSvg } from '../report/plot';
import * as torch from '../torch';
import { Generator, Tensor } from '../torch';
import { writeFileAtomic } from './write-atomic';

export interface ConvergencePoint { step: number; distance: number }

/** matched + fraction x (shuffled - matched). */
export function convergenceThreshold(reference: { matched: number; shuffled: number }, fraction: number): number {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`convergence threshold: fraction must be in (0, 1], got ${fraction}`);
  if (!(reference.shuffled > reference.matched)) {
    throw new RangeError(`convergence threshold: shuffled real pairs (${reference.shuffled}) must be farther apart than matched ones (${reference.matched}); ` +
      'the held-out conditions are too alike to tell following the condition from ignoring it');
  }
  return reference.matched + fraction * (reference.shuffled - reference.matched);
}

/** The step of the first evaluation (in step order) under the threshold, or null if none is. */
export function firstStepUnder(series: readonly ConvergencePoint[], threshold: number): number | null {
  const sorted = [...series].sort((a, b) => a.step - b.step);
  return sorted.find((p) => p.distance < threshold)?.step ?? null;
}

/**
 * Samples a DiT-ControlNet for the given conditions (eval mode, no guidance), all noise from a
 * private generator seeded with `seed`, so training's random streams are untouched and the same
 * call gives the same images. Returns [N, C, H, W] on the CPU.
 */
export function sampleControlled(model: DiTControlNet, diffusion: SpacedDiffusion, o: { conditions: Tensor; labels: number[]; seed: number }): Tensor {
  const device = model.pos_embed.device;
  const g = new Generator('cpu', BigInt(o.seed));
  return torch.noGrad(() => torch.scope(() => {
    const c = model.config;
    const n = o.labels.length;
    const z = torch.randn([n, c.inChannels, c.inputSize, c.inputSize], { generator: g }).to({ device });
    const out = diffusion.ddimSampleLoop(
      (x, t, k: { y: Tensor; cond: Tensor }) => model.forward(x, t, k.y, { condition: k.cond }), z.shape, {
        noise: z,
        modelKwargs: { y: torch.tensor(o.labels, { dtype: 'int64' }).to({ device }), cond: o.conditions.to({ device }) },
        clipDenoised: true,
        noiseFn: (_, x) => torch.randn(x.shape, { generator: g }).to({ device }),
      });
    return out.to({ device: 'cpu' });
  }));
}

export interface DetectorOptions {
  kind: ConditionKind;
  /** Held-out real images [n, 3, H, W] in [-1, 1]; their conditions are the fixed evaluation inputs. */
  images: Tensor;
  /** The label each sample is drawn with (the null label, or target classes). */
  labels: number[];
  seed: number;
  steps: number;
  fraction: number;
  /** Whether the model outputs a variance (DiT's learn_sigma); the sampler must match. */
  learnSigma: boolean;
}

export interface ConvergenceSummary {
  condition: ConditionKind;
  threshold: number;
  fraction: number;
  reference: { matched: number; shuffled: number };
  series: ConvergencePoint[];
  /** First evaluated step under the threshold; null: not within the run. */
  convergence_step: number | null;
}

function meanOf(t: Tensor): number {
  return torch.scope(() => t.mean().item());
}

export class ConvergenceDetector {
  readonly conditions: Tensor;
  readonly reference: { matched: number; shuffled: number };
  readonly threshold: number;
  private readonly diffusion: SpacedDiffusion;
  private readonly points = new Map<number, number>();

  constructor(readonly o: DetectorOptions) {
    const n = o.images.shape[0];
    if (n < 2) throw new RangeError(`convergence detector: needs at least 2 held-out images, got ${n}`);
    if (o.labels.length !== n) throw new RangeError(`convergence detector: ${o.labels.length} labels for ${n} images`);
    this.conditions = extractCondition(o.kind, o.images).keep();
    this.reference = torch.scope(() => ({
      matched: meanOf(conditionDistance(o.kind, o.images, this.conditions)),
      // Image i against the condition of image i+1 (a derangement, so no image meets its own).
      shuffled: meanOf(conditionDistance(o.kind, o.images, this.conditions.roll([1], [0]))),
    }));
    this.threshold = convergenceThreshold(this.reference, o.fraction);
    this.diffusion = createDiffusion({ timestepRespacing: `ddim${o.steps}`, learnSigma: o.learnSigma });
  }

  /** Samples of the model as it is now, for the fixed conditions. */
  sample(model: DiTControlNet): Tensor {
    if (model.config.learnSigma !== this.o.learnSigma) throw new Error('convergence detector: the model and the sampler disagree on learnSigma');
    return sampleControlled(model, this.diffusion, { conditions: this.conditions, labels: this.o.labels, seed: this.o.seed });
  }

  /** Measures the model now and records the point (callers set eval mode and the weights to measure). */
  measure(model: DiTControlNet, step: number): { distance: number; samples: Tensor } {
    const samples = this.sample(model);
    const distance = meanOf(torch.scope(() => conditionDistance(this.o.kind, samples, this.conditions)));
    this.record(step, distance);
    return { distance, samples };
  }

  /** Adds a measured point (a resumed run restores its earlier ones from the log). */
  record(step: number, distance: number): void {
    this.points.set(step, distance);
  }

  /** Forgets points after a step (a resumed run measures them again). */
  truncate(afterStep: number): void {
    for (const s of [...this.points.keys()]) if (s > afterStep) this.points.delete(s);
  }

  get series(): ConvergencePoint[] {
    return [...this.points].map(([step, distance]) => ({ step, distance })).sort((a, b) => a.step - b.step);
  }

  get convergenceStep(): number | null {
    return firstStepUnder(this.series, this.threshold);
  }

  summary(): ConvergenceSummary {
    return {
      condition: this.o.kind, threshold: this.threshold, fraction: this.o.fraction, reference: { ...this.reference },
      series: this.series, convergence_step: this.convergenceStep,
    };
  }

  /** Writes the curve with its threshold (and the convergence step) as an SVG. */
  plot(file: string, title = `${this.o.kind}: condition distance of samples`): void {
    writeFileAtomic(file, convergencePlot([{ label: path.basename(path.dirname(file)) || 'run', series: this.series }], this.threshold, title));
  }

  dispose(): void {
    this.conditions.dispose();
  }
}

/** One or more distance curves with the threshold as a dashed line and each curve's convergence point marked (SVG). */
export function convergencePlot(curves: { label: string; series: readonly ConvergencePoint[] }[], threshold: number, title: string): string {
  const xs = curves.flatMap((c) => c.series.map((p) => p.step));
  const lo = Math.min(0, ...xs);
  const hi = Math.max(1, ...xs);
  const converged = curves.flatMap((c) => {
    const step = firstStepUnder(c.series, threshold);
    return step === null ? [] : [c.series.find((p) => p.step === step)!];
  });
  return plotSvg([
    ...curves.map((c) => ({ label: c.label, x: c.series.map((p) => p.step), y: c.series.map((p) => p.distance) })),
    { label: `threshold ${threshold.toPrecision(3)}`, x: [lo, hi], y: [threshold, threshold], style: 'line' as const, dashed: true, color: '#888888' },
    ...(converged.length ? [{ label: 'convergence step', x: converged.map((p) => p.step), y: converged.map((p) => p.distance), style: 'scatter' as const, color: '#000000' }] : []),
  ], { title, xLabel: 'training step', yLabel: 'MSE(re-extracted condition, input condition)' });
}
