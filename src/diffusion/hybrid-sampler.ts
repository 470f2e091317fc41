// Sampling with two denoisers along one reverse chain: one model runs the noisy part of the chain,
// another the rest (the official fork's p_sample_loop_progressive stopped at cur_t, continued by
// p_sample_loop_from_middle_progressive with a second model). This is the chain-of-forgetting
// probe's sampler.
//
// The switch point is an index k of the (respaced) diffusion: steps with index >= k run the
// `noisy` model, steps with index < k (the k steps at the data end, t = 0 side) the `clean` one.
// k = 0 is the noisy model alone, k = numTimesteps the clean model alone.
//
// All randomness comes from one torch Generator, in a fixed order: x_T, then one draw of the
// step noise per step (also at the last step and for DDIM, as the reference loops do). Which
// model runs never changes what is drawn, so every switch point starts from the same x_T and
// sees the same step noise: the curve over switch points is a controlled comparison.
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { cfgModel, conditionalHalf } from './cfg';
import { GaussianDiffusion } from './gaussian-diffusion';
import { DiffusionModel } from './types';

/** A class-conditional denoiser: x [n, C, H, W], t [n] ORIGINAL timesteps, y [n] int64 -> [n, C | 2C, H, W]. */
export interface ConditionalDenoiser {
  forward: (x: Tensor, t: Tensor, y: Tensor) => Tensor;
  /** Label rows 0..numClasses-1 are classes. */
  numClasses: number;
  /** The label meaning "no class" (classifier-free guidance), or null when the model has none. */
  nullLabel: number | null;
}

/**
 * How one model is asked to denoise: with the target labels ('target') or its unconditional
 * branch ('null'), and with classifier-free guidance scale cfgScale (1 = none). With 'null'
 * labels guidance is the identity (cond = uncond), so cfgScale is ignored there.
 */
export interface LabelPolicy {
  labels: 'target' | 'null';
  cfgScale: number;
  /** Leading output channels that get guidance (default: all eps channels, i.e. x's channel count). */
  guideChannels?: number;
}

/**
 * The model function a diffusion calls, for one denoiser under one policy, with the target labels
 * of the batch (int64 [n]). Guidance is computed as DiT's sample.py does it ([cond; uncond] batch,
 * forward_with_cfg) and only the conditional half is returned, so the chain itself stays [n] rows
 * whichever policy each model has.
 */
export function policyModel(d: ConditionalDenoiser, p: LabelPolicy, targetLabels: Tensor, what = 'model'): DiffusionModel<unknown> {
  if (p.labels !== 'target' && p.labels !== 'null') throw new RangeError(`${what}: labels must be 'target' or 'null', got '${String(p.labels)}'`);
  if (!Number.isFinite(p.cfgScale)) throw new RangeError(`${what}: cfgScale must be a finite number, got ${p.cfgScale}`);
  if (targetLabels.ndim !== 1 || targetLabels.dtype !== 'int64') {
    throw new TypeError(`${what}: target labels must be int64 [n], got ${targetLabels.dtype} [${targetLabels.shape}]`);
  }
  const needsNull = p.labels === 'null' || p.cfgScale !== 1;
  if (needsNull && (d.nullLabel === null || !Number.isInteger(d.nullLabel))) {
    throw new Error(`${what}: the policy needs a null label (${p.labels === 'null' ? "labels 'null'" : `cfg scale ${p.cfgScale}`}) but the model has none`);
  }
  if (p.labels === 'target') {
    const ys = Array.from(targetLabels.cpu().data() as BigInt64Array, Number);
    const bad = ys.find((y) => y < 0 || y >= d.numClasses);
    if (bad !== undefined) throw new RangeError(`${what}: target label ${bad} is not a class of the model (0..${d.numClasses - 1})`);
  }
  const n = targetLabels.shape[0];
  const nullLabel = d.nullLabel ?? -1;
  const checkRows = (x: Tensor): void => {
    if (x.shape[0] !== n) throw new RangeError(`${what}: batch of ${x.shape[0]} rows for ${n} target labels`);
  };
  if (p.labels === 'null') {
    return (x, t) => torch.scope(() => {
      checkRows(x);
      return d.forward(x, t, torch.full([n], nullLabel, { dtype: 'int64', device: x.device }));
    });
  }
  if (p.cfgScale === 1) {
    return (x, t) => torch.scope(() => {
      checkRows(x);
      return d.forward(x, t, targetLabels.device === x.device ? targetLabels : targetLabels.to({ device: x.device }));
    });
  }
  return (x, t) => torch.scope(() => {
    checkRows(x);
    const y = targetLabels.to({ device: x.device });
    const guided = cfgModel(d.forward, { guideChannels: p.guideChannels ?? x.shape[1] });
    const yy = torch.cat([y, torch.full([n], nullLabel, { dtype: 'int64', device: x.device })], 0);
    return conditionalHalf(guided(torch.cat([x, x], 0), torch.cat([t, t], 0), { y: yy, cfgScale: p.cfgScale }));
  });
}

/** The switch index of a split fraction: the number of data-end steps, round(fraction * numSteps). */
export function switchIndexFor(fraction: number, numSteps: number): number {
  if (!Number.isInteger(numSteps) || numSteps < 1) throw new RangeError(`switchIndexFor: numSteps must be a positive integer, got ${numSteps}`);
  if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`switchIndexFor: the split fraction must lie in [0, 1], got ${fraction}`);
  return Math.round(fraction * numSteps);
}

export interface HybridSampleOptions {
  diffusion: GaussianDiffusion;
  /** Runs the steps with index >= switchIndex (the noisy part). */
  noisy: DiffusionModel<unknown>;
  /** Runs the steps with index < switchIndex (the data end). */
  clean: DiffusionModel<unknown>;
  /** 0..numTimesteps. */
  switchIndex: number;
  /** [n, C, H, W]. */
  shape: readonly number[];
  sampler: 'ddpm' | 'ddim';
  /** DDIM eta (default 0). */
  eta?: number;
  /** Clamp predicted x_0 to [-1, 1] (default true: pixel models). */
  clipDenoised?: boolean;
  /** The source of x_T and of every step's noise (drawn on its own device, then moved to `device`). */
  generator: torch.Generator;
  /** Where the chain runs (default the generator's device). */
  device?: Device;
  /** Called after each step with (steps done, total). */
  progress?: (done: number, total: number) => void;
}

/** One reverse chain with the model switched at switchIndex; returns x_0 [n, C, H, W] (float32). */
export function hybridSample(o: HybridSampleOptions): Tensor {
  const S = o.diffusion.numTimesteps;
  const k = o.switchIndex;
  if (!Number.isInteger(k) || k < 0 || k > S) throw new RangeError(`hybridSample: switchIndex must be an integer in 0..${S}, got ${k}`);
  if (o.sampler !== 'ddpm' && o.sampler !== 'ddim') throw new RangeError(`hybridSample: sampler must be 'ddpm' or 'ddim', got '${String(o.sampler)}'`);
  const device = o.device ?? o.generator.device;
  const shape = [...o.shape];
  const draw = (): Tensor => torch.scope(() => {
    const z = torch.randn(shape, { generator: o.generator, device: o.generator.device });
    return z.device === device ? z : z.to({ device });
  });
  const clipDenoised = o.clipDenoised ?? true;
  let x = draw();
  try {
    for (let s = 0; s < S; s++) {
      const i = S - 1 - s;
      const model = i >= k ? o.noisy : o.clean;
      const next = torch.noGrad(() => torch.scope(() => {
        const t = torch.full([shape[0]], i, { dtype: 'int64', device });
        const noise = draw();
        const step = o.sampler === 'ddim'
          ? o.diffusion.ddimSample(model, x, t, { noise, clipDenoised, eta: o.eta ?? 0 })
          : o.diffusion.pSample(model, x, t, { noise, clipDenoised });
        return step.sample;
      }));
      x.dispose();
      x = next;
      o.progress?.(s + 1, S);
    }
  } catch (e) {
    x.dispose();
    throw e;
  }
  return x;
}
