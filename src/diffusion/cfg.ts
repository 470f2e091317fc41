// Classifier-free guidance helpers, independent of any one model class: the [cond; uncond]
// batch layout DiT's sample.py builds, the guidance formula, and a wrapper that turns a plain
// conditional forward (x, t, y) into a guided model function with forward_with_cfg's semantics.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { DiffusionModel } from './types';

/** uncond + scale * (cond - uncond). */
export function guide(cond: Tensor, uncond: Tensor, scale: number): Tensor {
  return torch.scope(() => uncond.add(cond.sub(uncond).mul(scale)));
}

/** sample.py's CFG batch: x = cat([z, z]), y = cat([y, [nullLabel] * n]) (y int64). */
export function cfgBatch(z: Tensor, y: Tensor, nullLabel: number): { x: Tensor; y: Tensor } {
  if (y.ndim !== 1 || y.shape[0] !== z.shape[0]) throw new Error(`cfgBatch: ${y.shape} labels for a batch of ${z.shape[0]}`);
  return torch.scope(() => ({
    x: torch.cat([z, z], 0),
    y: torch.cat([y, torch.full([y.shape[0]], nullLabel, { dtype: y.dtype, device: y.device })], 0),
  }));
}

/** The conditional half of a CFG batch (samples.chunk(2)[0]), a copy. */
export function conditionalHalf(samples: Tensor): Tensor {
  if (samples.shape[0] % 2) throw new Error(`conditionalHalf: batch of ${samples.shape[0]} is odd`);
  return torch.scope(() => samples.slice(0, 0, samples.shape[0] / 2).contiguous());
}

/** Keyword arguments of a guided model (DiT's model_kwargs=dict(y=y, cfg_scale=s)). */
export interface CfgKwargs {
  /** [2n] labels: the conditional ones, then the null ones. */
  y: Tensor;
  cfgScale: number;
}

export interface CfgModelOptions {
  /**
   * How many leading output channels get guidance. DiT's forward_with_cfg guides 3 whatever the
   * number of input channels (kept for exact reproducibility); pass the channel count of the eps
   * half to guide all of it.
   */
  guideChannels?: number;
}

/**
 * forward_with_cfg over an arbitrary conditional forward: runs forward(cat([x_half, x_half]), t, y)
 * on the first half of x, guides the first guideChannels output channels (written to both
 * halves) and passes the rest through from each row's own branch.
 */
export function cfgModel(forward: (x: Tensor, t: Tensor, y: Tensor) => Tensor, o: CfgModelOptions = {}): DiffusionModel<CfgKwargs> {
  const g = o.guideChannels ?? 3;
  return (x, t, kwargs) => torch.scope(() => {
    const n = x.shape[0];
    if (n % 2) throw new Error(`cfgModel: batch size ${n} is odd (expected [cond; uncond] halves)`);
    const half = x.slice(0, 0, n / 2);
    const out = forward(torch.cat([half, half], 0), t, kwargs.y);
    const eps = out.slice(1, 0, g);
    const rest = out.slice(1, g);
    const [cond, uncond] = eps.split(n / 2, 0);
    const guided = guide(cond, uncond, kwargs.cfgScale);
    return torch.cat([torch.cat([guided, guided], 0), rest], 1);
  });
}

/**
 * Labels with rows from..end replaced by the null label: Diff-Tuning's replay samples
 * (y_embed_split = [nTarget, nReplay] → from = nTarget) are trained unconditionally.
 */
export function nullLabelsFrom(y: Tensor, from: number, nullLabel: number): Tensor {
  if (y.ndim !== 1) throw new Error(`nullLabelsFrom: labels must be 1-D, got [${y.shape}]`);
  if (!Number.isInteger(from) || from < 0 || from > y.shape[0]) throw new RangeError(`nullLabelsFrom: from = ${from} for ${y.shape[0]} labels`);
  return torch.scope(() => {
    const n = y.shape[0];
    const idx = torch.arange(0, n, 1, { device: y.device });
    return torch.where(idx.ge(from), torch.scalarLike(y, nullLabel), y);
  });
}
