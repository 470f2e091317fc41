// The five ControlNet conditions of the paper, computed with tensor ops on batches (CPU or CUDA):
// the same extractor makes the training pairs offline and re-extracts the condition from generated
// samples for the convergence metric (conditionDistance). Images and conditions are [-1, 1].
//
//   canny         1 channel, edges +1 on -1 (canny.ts)
//   sketch        1 channel, dark thin strokes on white +1 (sketch.ts)
//   segmentation  3 channels, k-means colour regions filled with their mean colour (segmentation.ts)
//   grayscale     1 channel, ITU-R 601 luma as PIL's convert('L') (grayscale.ts)
//   lowres        3 channels, 4x box-averaged then repeated back to full size (lowres.ts)
import { noGrad } from '../../torch/autograd';
import { scope } from '../../torch/scope';
import { Tensor } from '../../torch/tensor';
import { cannyDefaults, cannyEdges, CannyOptions } from './canny';
import { checkImages, checkNumber } from './check';
import { luma } from './grayscale';
import { LOWRES_DEFAULTS, lowres, LowresOptions } from './lowres';
import { SEGMENTATION_DEFAULTS, segmentColours, SegmentationOptions } from './segmentation';
import { sketchDefaults, sketchLines, SketchOptions } from './sketch';

export type ConditionKind = 'canny' | 'sketch' | 'segmentation' | 'grayscale' | 'lowres';
export const CONDITION_KINDS: readonly ConditionKind[] = Object.freeze(['canny', 'sketch', 'segmentation', 'grayscale', 'lowres'] as const);

/** Every extractor option; each kind takes some of them (OPTION_NAMES), the rest are an error. */
export interface ConditionOptions {
  /** canny, sketch: Gaussian blur in pixels (default 0.5 for images <= 64 px, else 1). */
  sigma?: number;
  /** canny: weak/strong thresholds (0.1/0.2); sketch: stroke start/full black (0.05/0.2); in luma contrast, a hard black-to-white step is 1. */
  low?: number;
  high?: number;
  /** segmentation: k (8) and Lloyd iterations (10). */
  clusters?: number;
  iterations?: number;
  /** lowres: downscale factor (4) and how the blocks are brought back to full size ('nearest'). */
  factor?: number;
  upsample?: 'nearest' | 'bilinear';
}

/** All options of a kind, defaults filled in (what a pair folder's manifest records). */
export type ResolvedConditionOptions = Record<string, number | string>;

const OPTION_NAMES: Record<ConditionKind, readonly (keyof ConditionOptions)[]> = {
  canny: ['sigma', 'low', 'high'],
  sketch: ['sigma', 'low', 'high'],
  segmentation: ['clusters', 'iterations'],
  grayscale: [],
  lowres: ['factor', 'upsample'],
};

const CHANNELS: Record<ConditionKind, number> = { canny: 1, sketch: 1, segmentation: 3, grayscale: 1, lowres: 3 };

export function isConditionKind(v: unknown): v is ConditionKind {
  return typeof v === 'string' && (CONDITION_KINDS as readonly string[]).includes(v);
}

/** v as a kind, or an error naming `what` (e.g. '--kind') and the choices. */
export function checkConditionKind(v: unknown, what = 'kind'): ConditionKind {
  if (!isConditionKind(v)) throw new RangeError(`${what} must be one of ${CONDITION_KINDS.join(', ')}; got ${JSON.stringify(v)}`);
  return v;
}

export function conditionChannels(kind: ConditionKind): number {
  return CHANNELS[checkConditionKind(kind)];
}

/** Checks options for a kind and fills in the defaults for images of the given shorter side. */
export function resolveConditionOptions(kind: ConditionKind, options: ConditionOptions | undefined, side: number): ResolvedConditionOptions {
  checkConditionKind(kind);
  const what = `condition ${kind}`;
  const allowed = OPTION_NAMES[kind];
  for (const [key, value] of Object.entries(options ?? {})) {
    if (value === undefined) continue;
    if (!(allowed as readonly string[]).includes(key)) {
      throw new RangeError(`${what}: option ${key} does not apply (${allowed.length ? `it takes ${allowed.join(', ')}` : 'it takes no options'})`);
    }
  }
  const given = Object.fromEntries(Object.entries(options ?? {}).filter(([, v]) => v !== undefined)) as ConditionOptions;
  switch (kind) {
    case 'canny':
    case 'sketch': {
      const o = { ...(kind === 'canny' ? cannyDefaults(side) : sketchDefaults(side)), ...given };
      checkNumber(what, 'sigma', o.sigma, 0, 32);
      checkNumber(what, 'low', o.low, 0, 2);
      checkNumber(what, 'high', o.high, 0, 2);
      if (kind === 'canny' ? o.low > o.high : o.low >= o.high) {
        throw new RangeError(`${what}: option low (${o.low}) must be ${kind === 'canny' ? 'at most' : 'below'} high (${o.high})`);
      }
      return { sigma: o.sigma, low: o.low, high: o.high };
    }
    case 'segmentation': {
      const o = { ...SEGMENTATION_DEFAULTS, ...given };
      return { clusters: checkNumber(what, 'clusters', o.clusters, 1, 256, true), iterations: checkNumber(what, 'iterations', o.iterations, 0, 1000, true) };
    }
    case 'lowres': {
      const o = { ...LOWRES_DEFAULTS, ...given };
      if (o.upsample !== 'nearest' && o.upsample !== 'bilinear') {
        throw new RangeError(`${what}: option upsample must be 'nearest' or 'bilinear', got ${JSON.stringify(o.upsample)}`);
      }
      return { factor: checkNumber(what, 'factor', o.factor, 1, 64, true), upsample: o.upsample };
    }
    case 'grayscale':
      return {};
  }
}

/**
 * The condition of each image: [B, 3, H, W] floating in [-1, 1] -> [B, conditionChannels(kind), H, W]
 * in [-1, 1], same dtype and device. No gradients are recorded.
 */
export function extractCondition(kind: ConditionKind, images: Tensor, options?: ConditionOptions): Tensor {
  checkImages(images, `extractCondition(${JSON.stringify(kind)})`);
  // Resolved options hold exactly the fields of the kind's options type.
  const o: unknown = resolveConditionOptions(kind, options, Math.min(images.shape[2], images.shape[3]));
  return noGrad(() => scope(() => {
    switch (kind) {
      case 'canny': return cannyEdges(images, o as CannyOptions).mul(2).sub(1);
      case 'sketch': return sketchLines(images, o as SketchOptions).mul(2).sub(1);
      case 'segmentation': return segmentColours(images, o as SegmentationOptions);
      case 'grayscale': return luma(images);
      case 'lowres': return lowres(images, o as LowresOptions);
    }
  }));
}

/**
 * The paper's ControlNet convergence metric: per sample, the mean squared difference between the
 * condition re-extracted from the generated image and the condition it was generated from. [B].
 */
export function conditionDistance(kind: ConditionKind, generated: Tensor, condition: Tensor, options?: ConditionOptions): Tensor {
  checkImages(generated, `conditionDistance(${JSON.stringify(kind)})`);
  const [B, , H, W] = generated.shape;
  const want = [B, conditionChannels(kind), H, W];
  if (condition.shape.length !== 4 || condition.shape.some((d, i) => d !== want[i])) {
    throw new TypeError(`conditionDistance(${JSON.stringify(kind)}): condition must be [${want.join(', ')}] for generated [${generated.shape.join(', ')}], got [${condition.shape.join(', ')}]`);
  }
  return noGrad(() => scope(() => extractCondition(kind, generated, options).sub(condition.to({ dtype: generated.dtype })).square().mean([1, 2, 3])));
}
