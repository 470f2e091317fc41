// What diffusers' DDPM / DDIM / PNDM schedulers share: the float32 noise tables built with torch ops
// (so they equal diffusers' bit for bit), the inference timestep spacings, add_noise and
// scale_model_input. Scalar coefficients are computed as diffusers computes them on 0-d float32
// tensors: every operation rounded to float32 (f32 below).
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import { aten } from '../../torch/aten';
import { getNamedBetaSchedule, linspace } from '../schedule';
import { SchedulerConfig, TimestepSpacing } from './config';

/** Round to float32: one operation of a 0-d float32 tensor. */
export const f32 = Math.fround;

/** x ** 0.5 on a float32 scalar (torch's pow(0.5) is a correctly rounded sqrt). */
export function sqrt32(x: number): number {
  return f32(Math.sqrt(x));
}

/**
 * Standard normal noise shaped and typed like `like`, on its device. Drawn on the generator's own
 * device (diffusers' randn_tensor): a CPU generator cannot draw on CUDA.
 */
export function randnLikeFrom(like: Tensor, generator?: torch.Generator): Tensor {
  const device = generator?.device ?? like.device;
  return torch.scope(() => torch.randn(like.shape, { generator, dtype: like.dtype, device }).to({ device: like.device }));
}

const cumprodOp = aten('cumprod');

/** betas, alphas = 1 - betas and alphas_cumprod = cumprod(alphas) as diffusers builds them (float32 tensors). */
export function noiseTables(c: SchedulerConfig): { betas: Float32Array; alphas: Float32Array; alphasCumprod: Float32Array } {
  return torch.scope(() => {
    const T = c.numTrainTimesteps;
    let betas: Tensor;
    if (c.trainedBetas) {
      if (c.trainedBetas.length !== T) throw new Error(`scheduler: trained_betas has ${c.trainedBetas.length} entries for num_train_timesteps ${T}`);
      betas = torch.tensor(c.trainedBetas, { dtype: 'float32' });
    } else if (c.betaSchedule === 'linear') {
      betas = torch.linspace(c.betaStart, c.betaEnd, T, { dtype: 'float32' });
    } else if (c.betaSchedule === 'scaled_linear') {
      // Stable Diffusion's schedule: linear in sqrt(beta), squared (float32 linspace, as diffusers).
      betas = torch.linspace(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), T, { dtype: 'float32' }).pow(2);
    } else {
      // betas_for_alpha_bar (cosine) in Python floats, then a float32 tensor.
      betas = torch.fromTypedArray(Float32Array.from(getNamedBetaSchedule('squaredcos_cap_v2', T)));
    }
    const alphas = betas.rsub(1);
    const alphasCumprod = new Tensor(cumprodOp(alphas.h, 0, null));
    const arr = (t: Tensor): Float32Array => t.data() as Float32Array;
    return { betas: arr(betas), alphas: arr(alphas), alphasCumprod: arr(alphasCumprod) };
  });
}

/** numpy's round (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The inference timesteps in ascending order for `spacing` (diffusers' set_timesteps):
 * leading = i * (T // n) + stepsOffset, trailing = round(arange(T, 0, -T/n)) - 1,
 * linspace = round(linspace(0, T - 1, n)).
 */
export function spacedTimesteps(T: number, n: number, spacing: TimestepSpacing, stepsOffset: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`set_timesteps: num_inference_steps must be a positive integer, got ${n}`);
  if (n > T) {
    throw new RangeError(`set_timesteps: num_inference_steps ${n} cannot be larger than num_train_timesteps ${T}, ` +
      `the most steps the model was trained with`);
  }
  switch (spacing) {
    case 'leading': {
      const ratio = Math.floor(T / n);
      return Array.from({ length: n }, (_, i) => i * ratio + stepsOffset);
    }
    case 'trailing': {
      // np.arange(T, 0, -ratio) with a float ratio: ceil(T / ratio) values start + i * delta.
      const ratio = T / n;
      const count = Math.ceil((0 - T) / -ratio);
      const delta = (T - ratio) - T;
      const out: number[] = [];
      for (let i = 0; i < count; i++) out.push(roundHalfEven(T + i * delta) - 1);
      return out.reverse();
    }
    case 'linspace':
      return Array.from(linspace(0, T - 1, n), roundHalfEven);
  }
}

/** The shared state and the step-independent methods of the three schedulers. */
export abstract class Scheduler {
  readonly config: SchedulerConfig;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** The standard deviation of the initial noise (1 for these schedulers). */
  readonly initNoiseSigma = 1.0;
  numInferenceSteps: number | null = null;
  /** The timesteps of the sampling loop, in the order to call step() with. */
  timesteps: number[];

  constructor(config: SchedulerConfig) {
    this.config = config;
    const tables = noiseTables(config);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.timesteps = Array.from({ length: config.numTrainTimesteps }, (_, i) => config.numTrainTimesteps - 1 - i);
  }

  /** The n inference timesteps, descending (DDPM and DDIM; PNDM adds its own structure). */
  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(c.numTrainTimesteps, numInferenceSteps, c.timestepSpacing, c.stepsOffset).reverse();
    this.numInferenceSteps = numInferenceSteps;
  }

  /** alphas_cumprod[t] (float32), with a clear error for a timestep out of range. */
  protected alphaProd(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new RangeError(`${this.constructor.name}: timestep ${t} is outside 0..${this.alphasCumprod.length - 1}`);
    }
    return this.alphasCumprod[t];
  }

  /** The model input at timestep t: unchanged for DDPM/DDIM/PNDM (the same tensor is returned). */
  scaleModelInput(sample: Tensor, _t?: number): Tensor {
    return sample;
  }

  /** q(x_t | x_0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, one timestep per batch row (tables cast to x0's dtype, as diffusers). */
  addNoise(original: Tensor, noise: Tensor, timesteps: Tensor | readonly number[]): Tensor {
    return torch.scope(() => {
      const t = Array.isArray(timesteps) || !(timesteps instanceof Tensor)
        ? torch.tensor([...(timesteps as readonly number[])], { dtype: 'int64' })
        : timesteps;
      const abar = torch.fromTypedArray(this.alphasCumprod).to({ device: original.device, dtype: original.dtype })
        .index([t.to({ device: original.device }).long()]);
      let sqrtAlpha = abar.pow(0.5).flatten();
      let sqrtOneMinus = abar.rsub(1).pow(0.5).flatten();
      while (sqrtAlpha.ndim < original.ndim) sqrtAlpha = sqrtAlpha.unsqueeze(-1);
      while (sqrtOneMinus.ndim < original.ndim) sqrtOneMinus = sqrtOneMinus.unsqueeze(-1);
      return sqrtAlpha.mul(original).add(sqrtOneMinus.mul(noise));
    });
  }

  /** x0 and eps from a model output by prediction type (DDPM/DDIM's formulas, float32 coefficients). */
  protected predictions(modelOutput: Tensor, sample: Tensor, alphaProdT: number): { x0: Tensor; eps: Tensor } {
    const betaProdT = f32(1 - alphaProdT);
    const sa = sqrt32(alphaProdT);
    const sb = sqrt32(betaProdT);
    switch (this.config.predictionType) {
      case 'epsilon':
        return { x0: sample.sub(modelOutput.mul(sb)).div(sa), eps: modelOutput };
      case 'sample':
        return { x0: modelOutput, eps: sample.sub(modelOutput.mul(sa)).div(sb) };
      case 'v_prediction':
        return { x0: sample.mul(sa).sub(modelOutput.mul(sb)), eps: modelOutput.mul(sa).add(sample.mul(sb)) };
    }
  }

  protected clipX0(x0: Tensor): Tensor {
    const r = this.config.clipSampleRange;
    return this.config.clipSample ? x0.clamp(-r, r) : x0;
  }

  protected requireTimesteps(): number {
    if (this.numInferenceSteps === null) {
      throw new Error(`${this.constructor.name}: number of inference steps is not set: call setTimesteps(n) before step()`);
    }
    return this.numInferenceSteps;
  }
}
