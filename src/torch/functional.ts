// torch.nn.functional: stateless layers and losses.
import { aten, hasOp, schemaOf } from './aten';
import { DType, dtypeCode } from './dtype';
import { Tensor } from './tensor';

const op = {
  layerNorm: aten('layer_norm'), batchNorm: aten('batch_norm'), groupNorm: aten('group_norm'), gelu: aten('gelu'), silu: aten('silu'),
  softmax: aten('softmax.int'), logSoftmax: aten('log_softmax.int'), dropout: aten('dropout'),
  conv2d: aten('conv2d'), convTranspose2d: aten('conv_transpose2d.input'), avgPool2d: aten('avg_pool2d'),
  maxPool2d: aten('max_pool2d'), nearest: aten('upsample_nearest2d.vec'), bilinear: aten('upsample_bilinear2d.vec'),
  bicubic: aten('upsample_bicubic2d.vec'), embedding: aten('embedding'), mse: aten('mse_loss'), l1: aten('l1_loss'),
  linear: aten('linear'), sdpa: aten('scaled_dot_product_attention'), pad: aten('constant_pad_nd'),
  adaptiveAvgPool2d: aten('adaptive_avg_pool2d'), ones: aten('ones'),
};

export type Reduction = 'none' | 'mean' | 'sum';
const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

type Pair = number | [number, number];

/** x @ weight^T + bias. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(op.linear(x.h, weight.h, bias?.h ?? null));
}

export function layerNorm(x: Tensor, normalizedShape: readonly number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return new Tensor(op.layerNorm(x.h, [...normalizedShape], weight?.h ?? null, bias?.h ?? null, eps, true));
}

/** F.batch_norm: batch statistics (updating the running ones in place) when training, else the running ones. */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight: Tensor | null, bias: Tensor | null,
  training: boolean, momentum = 0.1, eps = 1e-5): Tensor {
  return new Tensor(op.batchNorm(x.h, weight?.h ?? null, bias?.h ?? null, runningMean?.h ?? null, runningVar?.h ?? null,
    training, momentum, eps, true));
}

export function groupNorm(x: Tensor, numGroups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return new Tensor(op.groupNorm(x.h, numGroups, weight?.h ?? null, bias?.h ?? null, eps, true));
}

/** GELU, exact (erf) or with the tanh approximation. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return new Tensor(op.gelu(x.h, approximate));
}

export function silu(x: Tensor): Tensor {
  return new Tensor(op.silu(x.h));
}

export function relu(x: Tensor): Tensor {
  return x.relu();
}

export function softmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return new Tensor(op.softmax(x.h, dim, dtype ? dtypeCode(dtype) : null));
}

export function logSoftmax(x: Tensor, dim: number, dtype?: DType): Tensor {
  return new Tensor(op.logSoftmax(x.h, dim, dtype ? dtypeCode(dtype) : null));
}

/** Zeroes elements with probability p while training (scaling the rest by 1/(1-p)). */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (!training || p === 0) return x.clone();
  return new Tensor(op.dropout(x.h, p, training));
}

export interface ConvOptions { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number }

export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvOptions = {}): Tensor {
  return new Tensor(op.conv2d(x.h, weight.h, bias?.h ?? null, o.stride ?? 1, o.padding ?? 0, o.dilation ?? 1, o.groups ?? 1));
}

export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor | null,
  o: ConvOptions & { outputPadding?: Pair } = {}): Tensor {
  return new Tensor(op.convTranspose2d(x.h, weight.h, bias?.h ?? null, o.stride ?? 1, o.padding ?? 0,
    o.outputPadding ?? 0, o.groups ?? 1, o.dilation ?? 1));
}

export interface PoolOptions { stride?: Pair; padding?: Pair; ceilMode?: boolean }

export function avgPool2d(x: Tensor, kernel: Pair, o: PoolOptions & { countIncludePad?: boolean } = {}): Tensor {
  return new Tensor(op.avgPool2d(x.h, kernel, o.stride ?? kernel, o.padding ?? 0, o.ceilMode ?? false,
    o.countIncludePad ?? true, null));
}

export function maxPool2d(x: Tensor, kernel: Pair, o: PoolOptions & { dilation?: Pair } = {}): Tensor {
  return new Tensor(op.maxPool2d(x.h, kernel, o.stride ?? kernel, o.padding ?? 0, o.dilation ?? 1, o.ceilMode ?? false));
}

export function adaptiveAvgPool2d(x: Tensor, outputSize: Pair): Tensor {
  return new Tensor(op.adaptiveAvgPool2d(x.h, outputSize));
}

export interface InterpolateOptions {
  size?: Pair;
  scaleFactor?: number | [number, number];
  mode?: 'nearest' | 'bilinear' | 'bicubic';
  alignCorners?: boolean;
}

/** Resizes NCHW images, as F.interpolate. */
export function interpolate(x: Tensor, o: InterpolateOptions): Tensor {
  const size = o.size === undefined ? null : typeof o.size === 'number' ? [o.size, o.size] : o.size;
  const scale = o.scaleFactor === undefined ? null
    : typeof o.scaleFactor === 'number' ? [o.scaleFactor, o.scaleFactor] : o.scaleFactor;
  if ((size === null) === (scale === null)) throw new Error('interpolate: give exactly one of size and scaleFactor');
  const mode = o.mode ?? 'nearest';
  if (mode === 'nearest') {
    if (o.alignCorners !== undefined) throw new Error("interpolate: alignCorners only applies to 'bilinear' and 'bicubic'");
    return new Tensor(op.nearest(x.h, size, scale));
  }
  const fn = mode === 'bilinear' ? op.bilinear : op.bicubic;
  return new Tensor(fn(x.h, size, o.alignCorners ?? false, scale));
}

/** Pads the last dims with a constant; pad lists (left, right, top, bottom, ...) as F.pad. */
export function pad(x: Tensor, padding: readonly number[], value = 0): Tensor {
  return new Tensor(op.pad(x.h, [...padding], value));
}

export function embedding(ids: Tensor, weight: Tensor): Tensor {
  return new Tensor(op.embedding(weight.h, ids.h, -1, false, false));
}

export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(op.mse(input.h, target.h, REDUCTION[reduction]));
}

export function l1Loss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return new Tensor(op.l1(input.h, target.h, REDUCTION[reduction]));
}

export interface AttentionOptions { attnMask?: Tensor | null; dropoutP?: number; isCausal?: boolean; scale?: number }

let fusedAttention: boolean | undefined;
/** Whether this libtorch has the fused scaled_dot_product_attention (2.x). */
export function hasFusedAttention(): boolean {
  return (fusedAttention ??= hasOp('scaled_dot_product_attention'));
}

let fusedScale: boolean | undefined;
function fusedAttentionTakesScale(): boolean {
  return (fusedScale ??= /\bscale\b/.test(schemaOf('scaled_dot_product_attention')));
}

/**
 * softmax(q k^T * scale + mask) v over the last two dims. Uses libtorch's fused kernel where it
 * exists (2.x); on 1.13 computes the same thing explicitly.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  // torch 2.0's fused kernel has no `scale` argument (2.1 added it): compute those explicitly.
  if (hasFusedAttention() && (o.scale === undefined || fusedAttentionTakesScale())) {
    const args: unknown[] = [q.h, k.h, v.h, o.attnMask?.h ?? null, o.dropoutP ?? 0, o.isCausal ?? false];
    if (o.scale !== undefined) args.push(o.scale);
    return new Tensor(op.sdpa(...args));
  }
  return explicitAttention(q, k, v, o);
}

/** The reference attention, written out (also the 1.13 path). */
export function explicitAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  const scale = o.scale ?? 1 / Math.sqrt(q.size(-1));
  const kt = k.transpose(-2, -1);
  const qs = q.mul(scale);
  let scores = qs.matmul(kt);
  kt.dispose();
  qs.dispose();
  const replace = (next: Tensor): void => {
    scores.dispose();
    scores = next;
  };
  if (o.isCausal) {
    const L = q.size(-2);
    const S = k.size(-2);
    const ones = new Tensor(op.ones([L, S], dtypeCode('bool'), null, q.device, null));
    const mask = ones.tril();
    ones.dispose();
    const inv = mask.logicalNot();
    replace(scores.maskedFill(inv, -Infinity));
    mask.dispose();
    inv.dispose();
  }
  if (o.attnMask) {
    if (o.attnMask.dtype === 'bool') {
      const inv = o.attnMask.logicalNot();
      replace(scores.maskedFill(inv, -Infinity));
      inv.dispose();
    } else {
      replace(scores.add(o.attnMask));
    }
  }
  replace(softmax(scores, -1));
  if (o.dropoutP) replace(dropout(scores, o.dropoutP, true));
  const out = scores.matmul(v);
  scores.dispose();
  return out;
}
