// Noise schedules and the float64 coefficient tables of a Gaussian diffusion, computed in plain
// JavaScript doubles with the same operation order as the numpy code of DiT's
// diffusion/gaussian_diffusion.py (so they agree with it to the last bit or two).

/** numpy.linspace(start, stop, num) in float64: start + i*step, the last entry exactly stop. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  if (!Number.isInteger(num) || num < 0) throw new RangeError(`linspace: num must be a non-negative integer, got ${num}`);
  const out = new Float64Array(num);
  if (num === 0) return out;
  const div = num - 1;
  const delta = stop - start;
  const step = div > 0 ? delta / div : NaN;
  for (let i = 0; i < num; i++) {
    // numpy: y = arange(num) * step (or (i / div) * delta when step == 0), then y += start.
    const y = div === 0 ? 0 : step === 0 ? (i / div) * delta : i * step;
    out[i] = y + start;
  }
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** The schedules of get_beta_schedule (DiT keeps the ones of the DDPM code base). */
export type BetaScheduleKind = 'linear' | 'quad' | 'warmup10' | 'warmup50' | 'const' | 'jsd';

/** get_beta_schedule(kind, beta_start, beta_end, num_diffusion_timesteps), float64. */
export function getBetaSchedule(kind: BetaScheduleKind, betaStart: number, betaEnd: number, numDiffusionTimesteps: number): Float64Array {
  const T = numDiffusionTimesteps;
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`getBetaSchedule: numDiffusionTimesteps must be a positive integer, got ${T}`);
  switch (kind) {
    case 'quad': {
      const r = linspace(Math.pow(betaStart, 0.5), Math.pow(betaEnd, 0.5), T);
      return r.map((v) => v * v);
    }
    case 'linear':
      return linspace(betaStart, betaEnd, T);
    case 'warmup10':
      return warmupBeta(betaStart, betaEnd, T, 0.1);
    case 'warmup50':
      return warmupBeta(betaStart, betaEnd, T, 0.5);
    case 'const':
      return new Float64Array(T).fill(betaEnd);
    case 'jsd':
      // 1/T, 1/(T-1), ..., 1
      return linspace(T, 1, T).map((v) => 1.0 / v);
    default:
      throw new Error(`unknown beta schedule '${String(kind)}'`);
  }
}

function warmupBeta(betaStart: number, betaEnd: number, T: number, warmupFrac: number): Float64Array {
  const betas = new Float64Array(T).fill(betaEnd);
  const warmupTime = Math.trunc(T * warmupFrac);
  betas.set(linspace(betaStart, betaEnd, warmupTime), 0);
  return betas;
}

/**
 * betas_for_alpha_bar: beta_i = min(1 - alphaBar((i+1)/T) / alphaBar(i/T), maxBeta), the
 * discretisation of a cumulative product function alpha_bar on [0, 1].
 */
export function betasForAlphaBar(numDiffusionTimesteps: number, alphaBar: (t: number) => number, maxBeta = 0.999): Float64Array {
  const T = numDiffusionTimesteps;
  const betas = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    const t1 = i / T;
    const t2 = (i + 1) / T;
    betas[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return betas;
}

/** Names accepted by get_named_beta_schedule; 'cosine' is an alias of 'squaredcos_cap_v2'. */
export type NamedBetaSchedule = 'linear' | 'squaredcos_cap_v2' | 'cosine';

/**
 * get_named_beta_schedule: 'linear' is the DDPM schedule 1e-4..0.02 scaled by 1000/T (so any
 * number of steps keeps the same overall noise), 'squaredcos_cap_v2' (alias 'cosine') the
 * improved-DDPM cosine schedule.
 */
export function getNamedBetaSchedule(name: NamedBetaSchedule, numDiffusionTimesteps: number): Float64Array {
  if (name === 'linear') {
    const scale = 1000 / numDiffusionTimesteps;
    return getBetaSchedule('linear', scale * 0.0001, scale * 0.02, numDiffusionTimesteps);
  }
  if (name === 'squaredcos_cap_v2' || name === 'cosine') {
    return betasForAlphaBar(numDiffusionTimesteps, (t) => {
      const c = Math.cos(((t + 0.008) / 1.008) * Math.PI / 2);
      return c * c;
    });
  }
  throw new Error(`unknown beta schedule '${String(name)}' (known: linear, squaredcos_cap_v2, cosine)`);
}

/** Every float64 table GaussianDiffusion precomputes from its betas (numpy attribute names, camelCased). */
export interface ScheduleArrays {
  betas: Float64Array;
  alphasCumprod: Float64Array;
  alphasCumprodPrev: Float64Array;
  alphasCumprodNext: Float64Array;
  sqrtAlphasCumprod: Float64Array;
  sqrtOneMinusAlphasCumprod: Float64Array;
  logOneMinusAlphasCumprod: Float64Array;
  sqrtRecipAlphasCumprod: Float64Array;
  sqrtRecipm1AlphasCumprod: Float64Array;
  /** Variance of q(x_{t-1} | x_t, x_0); entry 0 is 0. */
  posteriorVariance: Float64Array;
  /** log of posteriorVariance with entry 0 replaced by entry 1 (posteriorVariance[0] is 0). */
  posteriorLogVarianceClipped: Float64Array;
  posteriorMeanCoef1: Float64Array;
  posteriorMeanCoef2: Float64Array;
}

/** The names of the tables in ScheduleArrays. */
export type ScheduleArrayName = keyof ScheduleArrays;

export const SCHEDULE_ARRAY_NAMES: readonly ScheduleArrayName[] = [
  'betas', 'alphasCumprod', 'alphasCumprodPrev', 'alphasCumprodNext', 'sqrtAlphasCumprod',
  'sqrtOneMinusAlphasCumprod', 'logOneMinusAlphasCumprod', 'sqrtRecipAlphasCumprod', 'sqrtRecipm1AlphasCumprod',
  'posteriorVariance', 'posteriorLogVarianceClipped', 'posteriorMeanCoef1', 'posteriorMeanCoef2',
];

/** The numpy attribute name of each table (alphas_cumprod, ...), for fixtures and messages. */
export function snakeName(name: ScheduleArrayName): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Validates betas (1-D, 0 < beta <= 1) and computes every coefficient table in float64. */
export function computeSchedule(betasIn: ArrayLike<number>): ScheduleArrays {
  const T = betasIn.length;
  if (T < 1) throw new RangeError('computeSchedule: betas is empty');
  const betas = Float64Array.from(betasIn);
  for (let i = 0; i < T; i++) {
    if (!(betas[i] > 0 && betas[i] <= 1)) throw new RangeError(`computeSchedule: betas must lie in (0, 1], betas[${i}] = ${betas[i]}`);
  }
  const alphas = betas.map((b) => 1.0 - b);
  const alphasCumprod = new Float64Array(T);
  let acc = 1;
  for (let i = 0; i < T; i++) {
    // np.cumprod multiplies sequentially, left to right.
    acc *= alphas[i];
    alphasCumprod[i] = acc;
  }
  const alphasCumprodPrev = new Float64Array(T);
  const alphasCumprodNext = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    alphasCumprodPrev[i] = i === 0 ? 1.0 : alphasCumprod[i - 1];
    alphasCumprodNext[i] = i === T - 1 ? 0.0 : alphasCumprod[i + 1];
  }
  const sqrtAlphasCumprod = alphasCumprod.map((a) => Math.sqrt(a));
  const sqrtOneMinusAlphasCumprod = alphasCumprod.map((a) => Math.sqrt(1.0 - a));
  const logOneMinusAlphasCumprod = alphasCumprod.map((a) => Math.log(1.0 - a));
  const sqrtRecipAlphasCumprod = alphasCumprod.map((a) => Math.sqrt(1.0 / a));
  const sqrtRecipm1AlphasCumprod = alphasCumprod.map((a) => Math.sqrt(1.0 / a - 1));
  const posteriorVariance = new Float64Array(T);
  const posteriorMeanCoef1 = new Float64Array(T);
  const posteriorMeanCoef2 = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    posteriorVariance[i] = (betas[i] * (1.0 - alphasCumprodPrev[i])) / (1.0 - alphasCumprod[i]);
    posteriorMeanCoef1[i] = (betas[i] * Math.sqrt(alphasCumprodPrev[i])) / (1.0 - alphasCumprod[i]);
    posteriorMeanCoef2[i] = ((1.0 - alphasCumprodPrev[i]) * Math.sqrt(alphas[i])) / (1.0 - alphasCumprod[i]);
  }
  // log(append(posterior_variance[1], posterior_variance[1:])); empty for a single step, as numpy.
  const posteriorLogVarianceClipped = T > 1
    ? posteriorVariance.map((v, i) => Math.log(i === 0 ? posteriorVariance[1] : v))
    : new Float64Array(0);
  return {
    betas, alphasCumprod, alphasCumprodPrev, alphasCumprodNext, sqrtAlphasCumprod, sqrtOneMinusAlphasCumprod,
    logOneMinusAlphasCumprod, sqrtRecipAlphasCumprod, sqrtRecipm1AlphasCumprod, posteriorVariance,
    posteriorLogVarianceClipped, posteriorMeanCoef1, posteriorMeanCoef2,
  };
}
