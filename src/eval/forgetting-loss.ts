// The chain of forgetting measured by loss, without a sampler: on held-out target images, the
// ε-prediction MSE of the pretrained model and of fine-tuned models in buckets of t, with the same
// images, t and noise for every model. The paper's premise predicts that the pretrained model's
// excess loss (its MSE over a fine-tuned model's) is near 1x at the data end (small t), where its
// knowledge transfers, and grows toward the noise end, where it must be relearned.
import * as path from 'path';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion';
import { ConditionalDenoiser, policyModel } from '../diffusion/hybrid-sampler';
import type { DiffusionModel } from '../diffusion/types';
import { plotSvg, PlotSeries, svgToPng } from '../report/plot';
import { writeFileAtomic } from '../tuning/write-atomic';

export interface LossProbeOptions {
  pretrained: ConditionalDenoiser;
  /** The fine-tuned models, by name (the names label the curves). */
  finetuned: { name: string; model: ConditionalDenoiser }[];
  /** Held-out target images, uint8 [N, C, H, W]. */
  images: Tensor;
  /** Their target labels (the fine-tuned models' classes). */
  labels: readonly number[];
  /** The training diffusion (all T steps, not respaced). */
  diffusion: GaussianDiffusion;
  /** Equal-width buckets over 0..T-1 (default 10). */
  buckets?: number;
  /** t draws per image and bucket, each with its own noise (default 1). */
  draws?: number;
  /** The pretrained model's label: its unconditional branch ('null', default) or the target labels ('same'). */
  pretrainedLabels?: 'null' | 'same';
  seed: number;
  batchSize?: number;
  device?: Device;
}

export interface MeanWithError { mean: number; se: number }

export interface LossBucket {
  /** The bucket's timesteps: tLow <= t <= tHigh. */
  tLow: number;
  tHigh: number;
  /** Mean per-image ε-MSE of each model (key 'pretrained' or a fine-tuned name) with its standard error. */
  mse: Record<string, MeanWithError>;
  /**
   * Per fine-tuned model: mean pretrained MSE / mean fine-tuned MSE, with its standard error from the
   * paired per-image losses (delta method) and a 95% interval.
   */
  ratio: Record<string, { value: number; se: number; low: number; high: number }>;
}

export interface LossProbeResult {
  images: number;
  draws: number;
  numTimesteps: number;
  buckets: LossBucket[];
}

/** Equal-width t buckets [lo, hi] (inclusive) over 0..T-1. */
export function timestepBuckets(T: number, count: number): [number, number][] {
  if (!Number.isInteger(count) || count < 1 || count > T) throw new RangeError(`buckets: expected an integer in 1..${T}, got ${count}`);
  return Array.from({ length: count }, (_, i) => [Math.floor((i * T) / count), Math.floor(((i + 1) * T) / count) - 1]);
}

/** Ratio of the means of paired samples a, b with its delta-method standard error. */
export function pairedRatio(a: readonly number[], b: readonly number[]): { value: number; se: number } {
  const n = a.length;
  if (n !== b.length || n < 2) throw new RangeError(`pairedRatio: needs two equal-length samples of at least 2, got ${a.length} and ${b.length}`);
  const ma = a.reduce((s, v) => s + v, 0) / n;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  let va = 0, vb = 0, cab = 0;
  for (let i = 0; i < n; i++) {
    va += (a[i] - ma) ** 2;
    vb += (b[i] - mb) ** 2;
    cab += (a[i] - ma) * (b[i] - mb);
  }
  va /= n - 1; vb /= n - 1; cab /= n - 1;
  const r = ma / mb;
  const variance = (va - 2 * r * cab + r * r * vb) / (mb * mb * n);
  return { value: r, se: Math.sqrt(Math.max(0, variance)) };
}

function meanWithError(v: readonly number[]): MeanWithError {
  const n = v.length;
  const mean = v.reduce((s, x) => s + x, 0) / n;
  const variance = n > 1 ? v.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, se: Math.sqrt(variance / n) };
}

/** Runs the probe: per bucket, every model's per-image ε-MSE on the same x_t (see the file comment). */
export function runLossProbe(o: LossProbeOptions): LossProbeResult {
  const T = o.diffusion.numTimesteps;
  const ranges = timestepBuckets(T, o.buckets ?? 10);
  const draws = o.draws ?? 1;
  if (!Number.isInteger(draws) || draws < 1) throw new RangeError(`loss probe: draws must be a positive integer, got ${draws}`);
  const batchSize = o.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`loss probe: batchSize must be a positive integer, got ${batchSize}`);
  const { images } = o;
  if (images.dtype !== 'uint8' || images.ndim !== 4) throw new TypeError(`loss probe: expected uint8 images [N, C, H, W], got ${images.dtype} [${images.shape}]`);
  const n = images.shape[0];
  if (n < 2) throw new RangeError(`loss probe: needs at least 2 images, got ${n}`);
  if (o.labels.length !== n) throw new RangeError(`loss probe: ${o.labels.length} labels for ${n} images`);
  if (o.finetuned.length === 0) throw new RangeError('loss probe: no fine-tuned model');
  const names = o.finetuned.map((f) => f.name);
  if (names.includes('pretrained') || new Set(names).size !== names.length) throw new RangeError(`loss probe: fine-tuned names must be distinct and not 'pretrained', got ${names.join(', ')}`);
  const device = o.device ?? 'cpu';
  const channels = images.shape[1];
  const generator = new torch.Generator('cpu', o.seed);
  const wrap = (m: DiffusionModel): DiffusionModel => o.diffusion.wrapModel(m);
  const pretrainedPolicy = { labels: o.pretrainedLabels === 'same' ? 'target' as const : 'null' as const, cfgScale: 1 };

  // losses[model][bucket] = per-(image, draw) MSE, in the same order for every model (the pairing).
  const losses = new Map<string, number[][]>([['pretrained', ranges.map(() => [])], ...names.map((m) => [m, ranges.map(() => [])] as [string, number[][]])]);
  torch.noGrad(() => {
    for (let start = 0; start < n; start += batchSize) {
      const rows = Math.min(batchSize, n - start);
      torch.scope(() => {
        const x0 = images.narrow(0, start, rows).to({ dtype: 'float32', device }).div(127.5).sub(1);
        const y = torch.tensor(o.labels.slice(start, start + rows), { dtype: 'int64', device });
        const models: [string, DiffusionModel][] = [
          ['pretrained', policyModel(o.pretrained, pretrainedPolicy, y, 'pretrained model')],
          ...o.finetuned.map((f) => [f.name, policyModel(f.model, { labels: 'target', cfgScale: 1 }, y, f.name)] as [string, DiffusionModel]),
        ];
        ranges.forEach(([lo, hi], b) => {
          for (let d = 0; d < draws; d++) {
            torch.scope(() => {
              // Drawn on the CPU generator in a fixed order, so every device gives the same t and noise.
              const t = torch.randint(lo, hi + 1, [rows], { generator }).to({ device });
              const noise = torch.randn(x0.shape, { generator }).to({ device });
              const xt = o.diffusion.qSample(x0, t, noise);
              for (const [name, model] of models) {
                const out = wrap(model)(xt, t, {});
                const eps = out.shape[1] === 2 * channels ? out.narrow(1, 0, channels) : out;
                const mse = eps.sub(noise).square().mean([1, 2, 3]).cpu().data() as Float32Array;
                losses.get(name)![b].push(...mse);
              }
            });
          }
        });
      });
    }
  });

  const buckets = ranges.map(([tLow, tHigh], b): LossBucket => {
    const pre = losses.get('pretrained')![b];
    const mse: Record<string, MeanWithError> = { pretrained: meanWithError(pre) };
    const ratio: LossBucket['ratio'] = {};
    for (const name of names) {
      const ft = losses.get(name)![b];
      mse[name] = meanWithError(ft);
      const r = pairedRatio(pre, ft);
      ratio[name] = { ...r, low: r.value - 1.96 * r.se, high: r.value + 1.96 * r.se };
    }
    return { tLow, tHigh, mse, ratio };
  });
  return { images: n, draws, numTimesteps: T, buckets };
}

/** The excess-loss curves (pretrained MSE / fine-tuned MSE per bucket, 95% intervals) as an SVG plot. */
export function lossForgettingPlotSvg(result: LossProbeResult, title = 'Chain of forgetting, by loss'): string {
  const x = result.buckets.map((b) => (b.tLow + b.tHigh) / 2);
  const names = Object.keys(result.buckets[0].ratio);
  const series: PlotSeries[] = names.map((name) => ({
    label: `pretrained / ${name}`,
    x,
    y: result.buckets.map((b) => b.ratio[name].value),
    yErr: result.buckets.map((b) => 1.96 * b.ratio[name].se),
  }));
  series.push({ label: 'no excess (1x)', x: [0, result.numTimesteps - 1], y: [1, 1], style: 'line', dashed: true, color: '#999999' });
  return plotSvg(series, {
    title: `${title} (${result.images} held-out images x ${result.draws} draws per bucket)`,
    xLabel: 'timestep t (bucket centre; 0 = data end)',
    yLabel: 'eps-MSE of the pretrained model / of the fine-tuned model',
    xRange: [0, result.numTimesteps - 1],
  });
}

export interface LossReportFiles { curve: string; svg: string; png: string }

/** Writes DIR/loss-curve.json (the buckets plus `meta`), DIR/loss-forgetting.svg and .png, each atomically. */
export async function writeLossForgettingReport(dir: string, result: LossProbeResult, meta: Record<string, unknown> = {}): Promise<LossReportFiles> {
  const files = { curve: path.join(dir, 'loss-curve.json'), svg: path.join(dir, 'loss-forgetting.svg'), png: path.join(dir, 'loss-forgetting.png') };
  const json = {
    ...meta,
    metric: 'eps_mse',
    ratio: 'mean eps-MSE of the pretrained model / mean eps-MSE of the fine-tuned model, same images, t and noise; se by the delta method over images',
    images: result.images,
    draws: result.draws,
    numTimesteps: result.numTimesteps,
    buckets: result.buckets,
  };
  const svg = lossForgettingPlotSvg(result);
  writeFileAtomic(files.curve, JSON.stringify(json, null, 2) + '\n');
  writeFileAtomic(files.svg, svg);
  writeFileAtomic(files.png, await svgToPng(svg));
  return files;
}
