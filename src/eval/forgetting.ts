// The chain-of-forgetting probe (the paper's Figure 1): sample with the fine-tuned model on the
// noisy part of the reverse chain and the pretrained model on the rest, for switch points across
// the whole chain, and measure FID against the target data at each. The paper's claim is that
// handing the low-noise end to the pretrained model costs little, and handing it more of the
// chain toward the noise end costs more and more.
//
// The x-axis (a "split" s in [0, 1]) is the switch point as a fraction of the reverse steps,
// counted from the data end (t = 0): the last k = round(s * S) steps run one model, the first
// S - k the other. Two curves share it:
//   - 'finetuned-then-pretrained' (the paper's): fine-tuned on the noisy part, pretrained on the
//     last k steps, so s is the share of steps handed to the pretrained model (0 = pure
//     fine-tuned, 1 = pure pretrained);
//   - 'pretrained-then-finetuned' (the reverse): pretrained on the noisy part, fine-tuned on the
//     last k steps (0 = pure pretrained, 1 = pure fine-tuned).
// Every run starts from the same x_T and uses the same step noise (hybrid-sampler.ts), so the two
// curves meet at their ends (pure models are sampled once and shared).
import * as path from 'path';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { imageGridPng } from '../report/grid';
import { plotSvg, PlotSeries, svgToPng } from '../report/plot';
import { writeFileAtomic } from '../tuning/write-atomic';
import { seededPermutation } from '../data/batch-iterator';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion';
import { ConditionalDenoiser, hybridSample, LabelPolicy, policyModel, switchIndexFor } from '../diffusion/hybrid-sampler';
import type { FeatureExtractor } from './extractor';
import { featureStats, FeatureStats } from './feature-stats';
import { frechetDistance } from './frechet';

/** What the probe needs of a feature extractor (uint8 [N, 3, H, W] images -> floating [N, dim] features). */
export type ProbeExtractor = Pick<FeatureExtractor, 'dim' | 'features'> & { name: string };

export type ForgettingDirection = 'finetuned-then-pretrained' | 'pretrained-then-finetuned';
export const FORGETTING_DIRECTIONS: readonly ForgettingDirection[] = ['finetuned-then-pretrained', 'pretrained-then-finetuned'];

/** 0, 0.1, ..., 1. */
export const DEFAULT_SPLITS: readonly number[] = Array.from({ length: 11 }, (_, i) => i / 10);

export interface ForgettingPoint {
  /** The split fraction asked for. */
  split: number;
  /** Steps at the data end run by the second model: round(split * numSteps). */
  switchIndex: number;
  /** Reverse steps run by each model. */
  pretrainedSteps: number;
  finetunedSteps: number;
  fid: number;
}

export interface ForgettingProbeOptions {
  pretrained: ConditionalDenoiser;
  finetuned: ConditionalDenoiser;
  /** One sample's shape [C, H, W] (C = 3: samples are turned into images for the extractor). */
  imageShape: readonly [number, number, number];
  /** The (respaced) diffusion both models sample with. */
  diffusion: GaussianDiffusion;
  sampler: 'ddpm' | 'ddim';
  eta?: number;
  /** Default true (pixel models). */
  clipDenoised?: boolean;
  /** Split fractions in [0, 1] (default DEFAULT_SPLITS). */
  splits?: readonly number[];
  /** The target label of each sample: n = labels.length samples per run. */
  labels: readonly number[];
  /** Guidance of the fine-tuned model (and of the pretrained one when it gets the same labels); 1 = none. */
  cfgScale: number;
  /** The pretrained model's labels: its unconditional branch ('null', default) or the target labels ('same'). */
  pretrainedLabels?: 'null' | 'same';
  extractor: ProbeExtractor;
  /** Feature statistics of the target data (e.g. datasetStats). */
  reference: FeatureStats;
  /** Samples per forward batch (default 64). */
  batchSize?: number;
  seed: number;
  device?: Device;
  /** Default both. */
  directions?: readonly ForgettingDirection[];
  /** Keep the first `previews` samples of each run (as [-1, 1] floats) for figures (default 0). */
  previews?: number;
  log?: (msg: string) => void;
}

export interface ForgettingResult {
  /** 'fid_' + the extractor's name. */
  metric: string;
  numSteps: number;
  splits: number[];
  curves: Partial<Record<ForgettingDirection, ForgettingPoint[]>>;
  /** Per direction: [splits * previews, C, H, W] floats in [-1, 1], split-major (kept; the caller disposes). */
  previews: Partial<Record<ForgettingDirection, Tensor>>;
}

/** Checks split fractions: numbers in [0, 1], at least one, no duplicates. */
export function checkSplits(splits: readonly number[], what = 'splits'): number[] {
  if (!Array.isArray(splits) || splits.length === 0) throw new RangeError(`${what}: expected at least one split fraction`);
  const seen = new Set<number>();
  for (const s of splits) {
    if (typeof s !== 'number' || !(s >= 0 && s <= 1)) throw new RangeError(`${what}: ${s} is not a fraction in [0, 1]`);
    if (seen.has(s)) throw new RangeError(`${what}: ${s} is given twice`);
    seen.add(s);
  }
  return [...splits];
}

/**
 * n labels in the proportions of a dataset's labels (each class gets its share of n up to rounding:
 * the i-th of n evenly spaced quantiles of the sorted labels), in a seeded random order so that
 * any prefix mixes classes.
 */
export function proportionalLabels(datasetLabels: readonly number[], n: number, seed: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`proportionalLabels: n must be a positive integer, got ${n}`);
  if (datasetLabels.length === 0) throw new RangeError('proportionalLabels: the dataset has no labels');
  const sorted = [...datasetLabels].sort((a, b) => a - b);
  const m = sorted.length;
  const quantiles = Array.from({ length: n }, (_, i) => sorted[Math.floor(((i + 0.5) * m) / n)]);
  const perm = seededPermutation(n, seed);
  return Array.from(perm, (j) => quantiles[j]);
}

/** uint8 images as DiT's sample_ddp.py stores samples: clamp(127.5 x + 128, 0, 255), truncated. */
export function toUint8Images(x: Tensor): Tensor {
  return torch.scope(() => x.mul(127.5).add(128).clamp(0, 255).to({ dtype: 'uint8' }));
}

/** Features of uint8 [N, 3, H, W] images in batches, concatenated ([N, dim], float). */
export function extractFeatures(extractor: ProbeExtractor, images: Tensor, batchSize = 256): Tensor {
  if (images.dtype !== 'uint8' || images.ndim !== 4 || images.shape[1] !== 3) {
    throw new TypeError(`extractFeatures: expected uint8 images [N, 3, H, W], got ${images.dtype} [${images.shape}]`);
  }
  const n = images.shape[0];
  return torch.noGrad(() => torch.scope(() => {
    const parts: Tensor[] = [];
    for (let i = 0; i < n; i += batchSize) parts.push(checkedFeatures(extractor, images.narrow(0, i, Math.min(batchSize, n - i))));
    return parts.length === 1 ? parts[0] : torch.cat(parts, 0);
  }));
}

function checkedFeatures(extractor: ProbeExtractor, images: Tensor): Tensor {
  const f = extractor.features(images);
  if (f.ndim !== 2 || f.shape[0] !== images.shape[0] || f.shape[1] !== extractor.dim) {
    throw new Error(`extractor '${extractor.name}': returned features [${f.shape}] for ${images.shape[0]} images (expected [${images.shape[0]}, ${extractor.dim}])`);
  }
  return f;
}

/** Feature statistics of a uint8 [N, 3, H, W] image set (the FID reference). */
export function datasetStats(extractor: ProbeExtractor, images: Tensor, batchSize = 256): FeatureStats {
  return torch.scope(() => featureStats(extractFeatures(extractor, images, batchSize)));
}

interface Run { key: string; fid: number; previews: Tensor | null }

/** Runs the probe (see the file comment); returns one FID per split and direction. */
export function runForgettingProbe(o: ForgettingProbeOptions): ForgettingResult {
  const splits = checkSplits(o.splits ?? DEFAULT_SPLITS);
  const directions = o.directions ?? FORGETTING_DIRECTIONS;
  for (const d of directions) if (!FORGETTING_DIRECTIONS.includes(d)) throw new RangeError(`forgetting probe: unknown direction '${d}'`);
  const [C, H, W] = o.imageShape;
  if (C !== 3) throw new RangeError(`forgetting probe: samples must have 3 channels to be images for the extractor, got ${C}`);
  const n = o.labels.length;
  if (n < 2) throw new RangeError(`forgetting probe: needs at least 2 samples per run for FID, got ${n}`);
  const batchSize = o.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`forgetting probe: batchSize must be a positive integer, got ${batchSize}`);
  const pretrainedLabels = o.pretrainedLabels ?? 'null';
  if (pretrainedLabels !== 'null' && pretrainedLabels !== 'same') throw new RangeError(`forgetting probe: pretrainedLabels must be 'null' or 'same', got '${String(pretrainedLabels)}'`);
  const nPreview = Math.min(o.previews ?? 0, n);
  const S = o.diffusion.numTimesteps;
  const device = o.device ?? 'cpu';
  const log = o.log ?? (() => undefined);
  const finetunedPolicy: LabelPolicy = { labels: 'target', cfgScale: o.cfgScale };
  const pretrainedPolicy: LabelPolicy = pretrainedLabels === 'null' ? { labels: 'null', cfgScale: 1 } : { labels: 'target', cfgScale: o.cfgScale };
  const metric = `fid_${o.extractor.name}`;

  // Pure models are the same run in both directions and at every split that rounds to 0 or S.
  const cache = new Map<string, Run>();
  const sampleRun = (noisy: 'finetuned' | 'pretrained', k: number): Run => {
    const clean = noisy === 'finetuned' ? 'pretrained' : 'finetuned';
    const key = k === 0 ? `pure ${noisy}` : k === S ? `pure ${clean}` : `${noisy} then ${clean} at ${k}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const started = Date.now();
    const generator = new torch.Generator('cpu', o.seed);
    const features: Tensor[] = [];
    let previews: Tensor | null = null;
    const keepPreview: Tensor[] = [];
    try {
      for (let start = 0; start < n; start += batchSize) {
        const rows = Math.min(batchSize, n - start);
        torch.scope(() => {
          const y = torch.tensor(o.labels.slice(start, start + rows), { dtype: 'int64', device });
          const models = {
            finetuned: policyModel(o.finetuned, finetunedPolicy, y, 'fine-tuned model'),
            pretrained: policyModel(o.pretrained, pretrainedPolicy, y, 'pretrained model'),
          };
          const x = hybridSample({
            diffusion: o.diffusion, noisy: models[noisy], clean: models[clean], switchIndex: k,
            shape: [rows, C, H, W], sampler: o.sampler, eta: o.eta, clipDenoised: o.clipDenoised, generator, device,
          });
          features.push(torch.noGrad(() => checkedFeatures(o.extractor, toUint8Images(x))).keep());
          if (start < nPreview) keepPreview.push(x.narrow(0, 0, Math.min(rows, nPreview - start)).clone().keep());
        });
      }
      const stats = torch.scope(() => featureStats(torch.cat(features, 0)));
      const fid = frechetDistance(stats, o.reference);
      if (keepPreview.length) previews = torch.scope(() => torch.cat(keepPreview, 0).cpu()).keep();
      log(`  ${key}: ${metric} ${fid.toFixed(3)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      const run = { key, fid, previews };
      cache.set(key, run);
      return run;
    } finally {
      for (const f of features) f.dispose();
      for (const p of keepPreview) p.dispose();
    }
  };

  const result: ForgettingResult = { metric, numSteps: S, splits, curves: {}, previews: {} };
  try {
    for (const direction of directions) {
      const noisy = direction === 'finetuned-then-pretrained' ? 'finetuned' : 'pretrained';
      log(`${direction}: ${splits.length} switch points over ${S} steps`);
      const points: ForgettingPoint[] = [];
      const runs: Run[] = [];
      for (const split of splits) {
        const k = switchIndexFor(split, S);
        const run = sampleRun(noisy, k);
        runs.push(run);
        const pretrainedSteps = noisy === 'finetuned' ? k : S - k;
        points.push({ split, switchIndex: k, pretrainedSteps, finetunedSteps: S - pretrainedSteps, fid: run.fid });
      }
      result.curves[direction] = points;
      if (nPreview > 0) result.previews[direction] = torch.scope(() => torch.cat(runs.map((r) => r.previews!), 0)).keep();
    }
  } finally {
    for (const run of cache.values()) run.previews?.dispose();
  }
  return result;
}

const SERIES_LABELS: Record<ForgettingDirection, string> = {
  'finetuned-then-pretrained': 'fine-tuned on the noisy part, pretrained at the data end (paper, Fig. 1)',
  'pretrained-then-finetuned': 'pretrained on the noisy part, fine-tuned at the data end',
};

/** The curves as an SVG plot: metric against the switch point. */
export function forgettingPlotSvg(result: ForgettingResult, title = 'Chain of forgetting'): string {
  const series: PlotSeries[] = FORGETTING_DIRECTIONS.filter((d) => result.curves[d]).map((d, i) => ({
    label: SERIES_LABELS[d],
    x: result.curves[d]!.map((p) => p.split),
    y: result.curves[d]!.map((p) => p.fid),
    dashed: i > 0,
  }));
  return plotSvg(series, {
    title: `${title} (${result.metric}, ${result.numSteps} steps)`,
    xLabel: 'switch point: fraction of reverse steps from the data end (t = 0)',
    yLabel: result.metric.replace(/^fid_/, 'FID, ') + ' features',
    xRange: [0, 1],
  });
}

export interface ForgettingReportFiles { curve: string; svg: string; png: string; grids: string[] }

/**
 * Writes DIR/curve.json (the result's curves plus `meta`, e.g. the command and its settings),
 * DIR/forgetting.svg and .png, and one sample grid per direction (a row per split) when the result
 * has previews. Every file is written atomically.
 */
export async function writeForgettingReport(dir: string, result: ForgettingResult, meta: Record<string, unknown> = {}): Promise<ForgettingReportFiles> {
  const files: ForgettingReportFiles = {
    curve: path.join(dir, 'curve.json'), svg: path.join(dir, 'forgetting.svg'), png: path.join(dir, 'forgetting.png'), grids: [],
  };
  const json = {
    ...meta,
    metric: result.metric,
    steps: result.numSteps,
    splits: result.splits,
    xAxis: 'split: fraction of reverse steps, counted from the data end (t = 0), run by the second model of the direction',
    curves: result.curves,
  };
  const svg = forgettingPlotSvg(result);
  const png = await svgToPng(svg);
  writeFileAtomic(files.curve, JSON.stringify(json, null, 2) + '\n');
  writeFileAtomic(files.svg, svg);
  writeFileAtomic(files.png, png);
  for (const d of FORGETTING_DIRECTIONS) {
    const previews = result.previews[d];
    if (!previews) continue;
    const file = path.join(dir, `samples-${d}.png`);
    const perRow = previews.shape[0] / result.splits.length;
    writeFileAtomic(file, imageGridPng(previews, perRow, 2, Math.max(1, Math.floor(48 / previews.shape[2]))));
    files.grids.push(file);
  }
  return files;
}
