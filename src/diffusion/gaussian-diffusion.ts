// Gaussian diffusion: the forward process q, the reverse process p given a model, the training
// objectives and the DDPM and DDIM samplers. A port of DiT's diffusion/gaussian_diffusion.py
// (itself OpenAI's improved-diffusion / guided-diffusion code) on top of the torch API.
//
// Numerics follow the reference: coefficient tables are float64 (schedule.ts), each is gathered
// at t and cast to the working dtype before it multiplies a tensor, and float32 operations are
// issued in the reference's order.
//
// Tensor ownership: every method returns new tensors owned by the caller (or by its enclosing
// torch.scope); temporaries are freed inside. The progressive sampling loops hand out each step's
// tensors until the iteration after, then free them (clone what you keep).
import * as torch from '../torch';
import { Device, DType, Tensor } from '../torch';
import { CoefficientTables } from './coefficients';
import { discretizedGaussianLogLikelihood, meanFlat, normalKl } from './losses';
import { computeSchedule, SCHEDULE_ARRAY_NAMES, ScheduleArrays } from './schedule';
import {
  CondFn, DiffusionModel, isLearnedSigma, LossType, ModelMeanType, ModelVarType, PMeanVariance, SampleStep,
  TrainingLosses,
} from './types';

export interface GaussianDiffusionOptions {
  /** The noise schedule beta_1..beta_T (float64 values in (0, 1]). */
  betas: ArrayLike<number>;
  modelMeanType: ModelMeanType;
  modelVarType: ModelVarType;
  lossType: LossType;
}

export interface PMeanVarianceOptions<K = unknown> {
  /** Clamp the predicted x_0 to [-1, 1] (default true, as the reference). */
  clipDenoised?: boolean;
  /** Applied to the predicted x_0 before clamping. */
  denoisedFn?: (x: Tensor) => Tensor;
  /** Passed to the model as its third argument. */
  modelKwargs?: K;
}

export interface PSampleOptions<K = unknown> extends PMeanVarianceOptions<K> {
  /** Classifier guidance: gradient of log p(y|x_t) (shifts the mean for DDPM, the score for DDIM). */
  condFn?: CondFn<K>;
  /** The step's Gaussian noise; default torch.randnLike(x) (always drawn, even where masked). */
  noise?: Tensor;
}

export interface DdimSampleOptions<K = unknown> extends PSampleOptions<K> {
  /** 0 (default) is deterministic DDIM, 1 matches DDPM's variance. */
  eta?: number;
}

/** One step of a sampling loop as handed to callbacks and yielded by the progressive loops. */
export interface LoopStep extends SampleStep {
  /** 0-based position in the loop (0 = first step, at the noisiest timestep). */
  step: number;
  /** The index into this diffusion's tables (numTimesteps-1 down to 0). */
  index: number;
}

export interface SampleLoopOptions<K = unknown> extends PMeanVarianceOptions<K> {
  /** x_T; default torch.randn(shape) (dtype float32 unless dtype is given). Never freed by the loop. */
  noise?: Tensor;
  condFn?: CondFn<K>;
  /** Where t (and a drawn x_T) live; default noise's device, else cpu. */
  device?: Device;
  dtype?: DType;
  /**
   * Noise injection: returns the Gaussian noise of loop step `step` (0-based, loop order) for the
   * current x. Default torch.randnLike(x), drawn at every step including the last (masked there).
   */
  noiseFn?: (step: number, x: Tensor) => Tensor;
  /** Called after each step with (steps done, total). */
  progress?: (done: number, total: number) => void;
  /** Called after each step (pSampleLoop/ddimSampleLoop); its tensors are valid during the call only. */
  onStep?: (s: LoopStep) => void;
}

export interface DdimSampleLoopOptions<K = unknown> extends SampleLoopOptions<K> {
  eta?: number;
}

export interface TrainingLossOptions<K = unknown> {
  modelKwargs?: K;
  /** The noise of q_sample; default torch.randnLike(xStart). */
  noise?: Tensor;
}

export interface VbTerms {
  /** [N] bits per dimension: the decoder NLL where t == 0, else KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)). */
  output: Tensor;
  predXstart: Tensor;
}

export interface BpdLoop {
  /** [N] prior + sum of the per-step terms. */
  totalBpd: Tensor;
  /** [N] KL(q(x_T|x_0) || N(0, I)) in bits per dimension. */
  priorBpd: Tensor;
  /** [N, T] per-step terms in loop order: column k is t = T-1-k (as the reference stacks them). */
  vb: Tensor;
  /** [N, T] mean squared error of the x_0 prediction (same column order). */
  xstartMse: Tensor;
  /** [N, T] mean squared error of the implied epsilon. */
  mse: Tensor;
}

const WRAPPED = Symbol('difftune.diffusion.wrappedModel');

/** Marks a model function as already mapping timesteps (so a diffusion does not wrap it twice). */
export function markWrapped<F extends (...args: never[]) => unknown>(fn: F): F {
  (fn as unknown as Record<symbol, boolean>)[WRAPPED] = true;
  return fn;
}

export function isWrapped(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as unknown as Record<symbol, boolean>)[WRAPPED] === true;
}

/** Coefficient tables the reference computes on the fly from the schedule (names of CoefficientTables). */
type DerivedTable = 'oneMinusAlphasCumprod' | 'logBetas' | 'fixedLargeVariance' | 'fixedLargeLogVariance'
  | 'recipPosteriorMeanCoef1' | 'posteriorMeanCoef2OverCoef1';
type TableName = keyof ScheduleArrays | DerivedTable;

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Utilities for training and sampling diffusion models. */
export class GaussianDiffusion implements ScheduleArrays {
  readonly modelMeanType: ModelMeanType;
  readonly modelVarType: ModelVarType;
  readonly lossType: LossType;
  readonly numTimesteps: number;

  readonly betas!: Float64Array;
  readonly alphasCumprod!: Float64Array;
  readonly alphasCumprodPrev!: Float64Array;
  readonly alphasCumprodNext!: Float64Array;
  readonly sqrtAlphasCumprod!: Float64Array;
  readonly sqrtOneMinusAlphasCumprod!: Float64Array;
  readonly logOneMinusAlphasCumprod!: Float64Array;
  readonly sqrtRecipAlphasCumprod!: Float64Array;
  readonly sqrtRecipm1AlphasCumprod!: Float64Array;
  readonly posteriorVariance!: Float64Array;
  readonly posteriorLogVarianceClipped!: Float64Array;
  readonly posteriorMeanCoef1!: Float64Array;
  readonly posteriorMeanCoef2!: Float64Array;

  protected readonly tables = new CoefficientTables();

  constructor(o: GaussianDiffusionOptions) {
    this.modelMeanType = o.modelMeanType;
    this.modelVarType = o.modelVarType;
    this.lossType = o.lossType;
    const s = computeSchedule(o.betas);
    this.numTimesteps = s.betas.length;
    for (const name of SCHEDULE_ARRAY_NAMES) {
      (this as unknown as ScheduleArrays)[name] = s[name];
      this.tables.define(name, s[name]);
    }
    const T = this.numTimesteps;
    this.tables.define('oneMinusAlphasCumprod', s.alphasCumprod.map((a) => 1.0 - a));
    this.tables.define('logBetas', s.betas.map((b) => Math.log(b)));
    // FIXED_LARGE: append(posterior_variance[1], betas[1:]) and its log.
    const fixedLarge = s.betas.map((b, i) => (i === 0 ? (T > 1 ? s.posteriorVariance[1] : NaN) : b));
    this.tables.define('fixedLargeVariance', fixedLarge);
    this.tables.define('fixedLargeLogVariance', fixedLarge.map((v) => Math.log(v)));
    this.tables.define('recipPosteriorMeanCoef1', s.posteriorMeanCoef1.map((c) => 1.0 / c));
    this.tables.define('posteriorMeanCoef2OverCoef1', s.posteriorMeanCoef2.map((c, i) => c / s.posteriorMeanCoef1[i]));
  }

  /** For each step of this diffusion, the timestep of the original process the model sees (identity here). */
  get timestepMap(): readonly number[] {
    return Array.from({ length: this.numTimesteps }, (_, i) => i);
  }

  /** Frees the device copies of the coefficient tables (the object stays usable). */
  dispose(): void {
    this.tables.dispose();
  }

  /** The model as this diffusion calls it (a respaced diffusion maps timesteps first). */
  wrapModel<K>(model: DiffusionModel<K>): DiffusionModel<K> {
    return model;
  }

  /** table[t], cast to like's dtype, broadcast to like's shape (_extract_into_tensor). */
  protected extract(name: TableName, t: Tensor, like: Tensor): Tensor {
    return this.tables.extract(name, t, like.shape, like.dtype);
  }

  /** The distribution q(x_t | x_0): mean, variance and log-variance. */
  qMeanVariance(xStart: Tensor, t: Tensor): { mean: Tensor; variance: Tensor; logVariance: Tensor } {
    return torch.scope(() => ({
      mean: this.extract('sqrtAlphasCumprod', t, xStart).mul(xStart),
      variance: this.extract('oneMinusAlphasCumprod', t, xStart).contiguous(),
      logVariance: this.extract('logOneMinusAlphasCumprod', t, xStart).contiguous(),
    }));
  }

  /** Diffuses x_0 by t steps: sqrt(ac_t) x_0 + sqrt(1 - ac_t) noise (noise default randnLike(xStart)). */
  qSample(xStart: Tensor, t: Tensor, noise?: Tensor): Tensor {
    return torch.scope(() => {
      const n = noise ?? torch.randnLike(xStart);
      if (!sameShape(n.shape, xStart.shape)) throw new Error(`qSample: noise [${n.shape}] does not match x_start [${xStart.shape}]`);
      return this.extract('sqrtAlphasCumprod', t, xStart).mul(xStart)
        .add(this.extract('sqrtOneMinusAlphasCumprod', t, xStart).mul(n));
    });
  }

  /** The posterior q(x_{t-1} | x_t, x_0): mean, variance and clipped log-variance. */
  qPosteriorMeanVariance(xStart: Tensor, xT: Tensor, t: Tensor): { mean: Tensor; variance: Tensor; logVarianceClipped: Tensor } {
    if (!sameShape(xStart.shape, xT.shape)) throw new Error(`qPosteriorMeanVariance: x_start [${xStart.shape}] vs x_t [${xT.shape}]`);
    return torch.scope(() => ({
      mean: this.extract('posteriorMeanCoef1', t, xT).mul(xStart).add(this.extract('posteriorMeanCoef2', t, xT).mul(xT)),
      variance: this.extract('posteriorVariance', t, xT).contiguous(),
      logVarianceClipped: this.extract('posteriorLogVarianceClipped', t, xT).contiguous(),
    }));
  }

  /**
   * p(x_{t-1} | x_t) from the model: its mean, variance, log-variance and the x_0 it implies.
   * x: [N, C, ...]; t: [N] int64 indices of this diffusion.
   */
  pMeanVariance<K>(model: DiffusionModel<K>, x: Tensor, t: Tensor, o: PMeanVarianceOptions<K> = {}): PMeanVariance {
    const wrapped = this.wrapModel(model);
    const [B, C] = x.shape;
    if (t.ndim !== 1 || t.shape[0] !== B) throw new Error(`pMeanVariance: t has shape [${t.shape}], expected [${B}]`);
    const clip = o.clipDenoised ?? true;
    return torch.scope(() => {
      const raw = wrapped(x, t, o.modelKwargs as K);
      let modelOutput = raw;
      let variance: Tensor;
      let logVariance: Tensor;
      if (isLearnedSigma(this.modelVarType)) {
        const expected = [B, C * 2, ...x.shape.slice(2)];
        if (!sameShape(modelOutput.shape, expected)) {
          throw new Error(`pMeanVariance: model output [${modelOutput.shape}], expected [${expected}] (learned variance)`);
        }
        const [out, varValues] = modelOutput.split(C, 1);
        modelOutput = out;
        if (this.modelVarType === 'learned') {
          logVariance = varValues;
          variance = varValues.exp();
        } else {
          const minLog = this.extract('posteriorLogVarianceClipped', t, x);
          const maxLog = this.extract('logBetas', t, x);
          // The model's v in [-1, 1] spans [min_var, max_var] in log space.
          const frac = varValues.add(1).div(2);
          logVariance = frac.mul(maxLog).add(frac.rsub(1).mul(minLog));
          variance = logVariance.exp();
        }
      } else if (this.modelVarType === 'fixed_large') {
        variance = this.extract('fixedLargeVariance', t, x).contiguous();
        logVariance = this.extract('fixedLargeLogVariance', t, x).contiguous();
      } else {
        variance = this.extract('posteriorVariance', t, x).contiguous();
        logVariance = this.extract('posteriorLogVarianceClipped', t, x).contiguous();
      }
      const processXstart = (v: Tensor): Tensor => {
        let r = v;
        if (o.denoisedFn) r = o.denoisedFn(r);
        if (clip) r = r.clamp(-1, 1);
        return r;
      };
      let predXstart: Tensor;
      let mean: Tensor;
      if (this.modelMeanType === 'previous_x') {
        predXstart = processXstart(this.predictXstartFromXprev(x, t, modelOutput));
        mean = modelOutput;
      } else {
        predXstart = processXstart(this.modelMeanType === 'start_x' ? modelOutput : this.predictXstartFromEps(x, t, modelOutput));
        mean = this.qPosteriorMeanVariance(predXstart, x, t).mean;
      }
      if (!sameShape(mean.shape, x.shape) || !sameShape(predXstart.shape, x.shape)) {
        throw new Error(`pMeanVariance: model mean [${mean.shape}] does not match x [${x.shape}]`);
      }
      // The results belong to the caller: never hand back the model's or the caller's own tensor.
      const fresh = (v: Tensor): Tensor => (v === raw || v === x ? v.clone() : v);
      return { mean: fresh(mean), variance, logVariance, predXstart: fresh(predXstart) };
    });
  }

  /** x_0 = sqrt(1/ac_t) x_t - sqrt(1/ac_t - 1) eps. */
  predictXstartFromEps(xT: Tensor, t: Tensor, eps: Tensor): Tensor {
    if (!sameShape(xT.shape, eps.shape)) throw new Error(`predictXstartFromEps: x_t [${xT.shape}] vs eps [${eps.shape}]`);
    return torch.scope(() =>
      this.extract('sqrtRecipAlphasCumprod', t, xT).mul(xT).sub(this.extract('sqrtRecipm1AlphasCumprod', t, xT).mul(eps)));
  }

  /** x_0 from the posterior mean x_{t-1}: (x_{t-1} - coef2 x_t) / coef1. */
  predictXstartFromXprev(xT: Tensor, t: Tensor, xprev: Tensor): Tensor {
    if (!sameShape(xT.shape, xprev.shape)) throw new Error(`predictXstartFromXprev: x_t [${xT.shape}] vs x_prev [${xprev.shape}]`);
    return torch.scope(() =>
      this.extract('recipPosteriorMeanCoef1', t, xT).mul(xprev).sub(this.extract('posteriorMeanCoef2OverCoef1', t, xT).mul(xT)));
  }

  /** eps = (sqrt(1/ac_t) x_t - x_0) / sqrt(1/ac_t - 1). */
  predictEpsFromXstart(xT: Tensor, t: Tensor, predXstart: Tensor): Tensor {
    return torch.scope(() =>
      this.extract('sqrtRecipAlphasCumprod', t, xT).mul(xT).sub(predXstart).div(this.extract('sqrtRecipm1AlphasCumprod', t, xT)));
  }

  /** Classifier guidance on the mean (Sohl-Dickstein et al.): mean + variance * grad log p(y|x). */
  conditionMean<K>(condFn: CondFn<K>, pmv: PMeanVariance, x: Tensor, t: Tensor, modelKwargs?: K): Tensor {
    const fn = this.wrapModel(condFn);
    return torch.scope(() => {
      const gradient = fn(x, t, modelKwargs as K);
      return pmv.mean.add(pmv.variance.mul(gradient.to({ dtype: pmv.mean.dtype })));
    });
  }

  /** Classifier guidance on the score (Song et al.), for DDIM: eps - sqrt(1 - ac_t) grad; mean and x_0 recomputed. */
  conditionScore<K>(condFn: CondFn<K>, pmv: PMeanVariance, x: Tensor, t: Tensor, modelKwargs?: K): PMeanVariance {
    const fn = this.wrapModel(condFn);
    return torch.scope(() => {
      const alphaBar = this.extract('alphasCumprod', t, x);
      let eps = this.predictEpsFromXstart(x, t, pmv.predXstart);
      eps = eps.sub(alphaBar.rsub(1).sqrt().mul(fn(x, t, modelKwargs as K)));
      const predXstart = this.predictXstartFromEps(x, t, eps);
      const mean = this.qPosteriorMeanVariance(predXstart, x, t).mean;
      return { mean, variance: pmv.variance.clone(), logVariance: pmv.logVariance.clone(), predXstart };
    });
  }

  /** One ancestral (DDPM) step x_t -> x_{t-1}; the noise is masked where t == 0. */
  pSample<K>(model: DiffusionModel<K>, x: Tensor, t: Tensor, o: PSampleOptions<K> = {}): SampleStep {
    return torch.scope(() => {
      const out = this.pMeanVariance(model, x, t, o);
      const noise = o.noise ?? torch.randnLike(x);
      if (!sameShape(noise.shape, x.shape)) throw new Error(`pSample: noise [${noise.shape}] does not match x [${x.shape}]`);
      const mask = this.nonzeroMask(t, x);
      const mean = o.condFn ? this.conditionMean(o.condFn, out, x, t, o.modelKwargs) : out.mean;
      const sample = mean.add(mask.mul(out.logVariance.mul(0.5).exp()).mul(noise));
      return { sample, predXstart: out.predXstart };
    });
  }

  /** (t != 0) as float32, shaped [N, 1, ..., 1]. */
  private nonzeroMask(t: Tensor, x: Tensor): Tensor {
    return torch.scope(() => t.ne(0).to({ dtype: 'float32' }).view([-1, ...new Array<number>(x.ndim - 1).fill(1)]));
  }

  /** Samples with the full ancestral sampler; returns x_0 of shape `shape`. */
  pSampleLoop<K>(model: DiffusionModel<K>, shape: readonly number[], o: SampleLoopOptions<K> = {}): Tensor {
    return this.runLoop(this.pSampleLoopProgressive(model, shape, o), o.onStep);
  }

  /** The ancestral sampler step by step (see LoopStep; each step's tensors live until the next is requested). */
  *pSampleLoopProgressive<K>(model: DiffusionModel<K>, shape: readonly number[], o: SampleLoopOptions<K> = {}): Generator<LoopStep, void, void> {
    yield* this.loop(shape, o, (x, t, noise) => this.pSample(model, x, t, { ...o, noise }));
  }

  /** One DDIM step x_t -> x_{t-1} (eta 0: deterministic; noise is drawn anyway, as the reference). */
  ddimSample<K>(model: DiffusionModel<K>, x: Tensor, t: Tensor, o: DdimSampleOptions<K> = {}): SampleStep {
    const eta = o.eta ?? 0.0;
    return torch.scope(() => {
      let out = this.pMeanVariance(model, x, t, o);
      if (o.condFn) out = this.conditionScore(o.condFn, out, x, t, o.modelKwargs);
      // Recompute eps from the (possibly clipped) x_0, as the reference does.
      const eps = this.predictEpsFromXstart(x, t, out.predXstart);
      const alphaBar = this.extract('alphasCumprod', t, x);
      const alphaBarPrev = this.extract('alphasCumprodPrev', t, x);
      const sigma = alphaBarPrev.rsub(1).div(alphaBar.rsub(1)).sqrt().mul(eta)
        .mul(alphaBar.div(alphaBarPrev).rsub(1).sqrt());
      const noise = o.noise ?? torch.randnLike(x);
      if (!sameShape(noise.shape, x.shape)) throw new Error(`ddimSample: noise [${noise.shape}] does not match x [${x.shape}]`);
      const meanPred = out.predXstart.mul(alphaBarPrev.sqrt())
        .add(alphaBarPrev.rsub(1).sub(sigma.pow(2)).sqrt().mul(eps));
      const mask = this.nonzeroMask(t, x);
      const sample = meanPred.add(mask.mul(sigma).mul(noise));
      return { sample, predXstart: out.predXstart };
    });
  }

  /** The reverse ODE step x_t -> x_{t+1} (eta must be 0). */
  ddimReverseSample<K>(model: DiffusionModel<K>, x: Tensor, t: Tensor, o: PMeanVarianceOptions<K> & { eta?: number } = {}): SampleStep {
    if ((o.eta ?? 0) !== 0) throw new Error('ddimReverseSample: the reverse ODE only exists for eta = 0');
    return torch.scope(() => {
      const out = this.pMeanVariance(model, x, t, o);
      const eps = this.extract('sqrtRecipAlphasCumprod', t, x).mul(x).sub(out.predXstart)
        .div(this.extract('sqrtRecipm1AlphasCumprod', t, x));
      const alphaBarNext = this.extract('alphasCumprodNext', t, x);
      const meanPred = out.predXstart.mul(alphaBarNext.sqrt()).add(alphaBarNext.rsub(1).sqrt().mul(eps));
      return { sample: meanPred, predXstart: out.predXstart };
    });
  }

  /** Samples with DDIM; returns x_0 of shape `shape`. */
  ddimSampleLoop<K>(model: DiffusionModel<K>, shape: readonly number[], o: DdimSampleLoopOptions<K> = {}): Tensor {
    return this.runLoop(this.ddimSampleLoopProgressive(model, shape, o), o.onStep);
  }

  *ddimSampleLoopProgressive<K>(model: DiffusionModel<K>, shape: readonly number[], o: DdimSampleLoopOptions<K> = {}): Generator<LoopStep, void, void> {
    yield* this.loop(shape, o, (x, t, noise) => this.ddimSample(model, x, t, { ...o, noise }));
  }

  private runLoop(steps: Generator<LoopStep, void, void>, onStep?: (s: LoopStep) => void): Tensor {
    let last: LoopStep | undefined;
    for (const s of steps) {
      onStep?.(s);
      last = s;
    }
    if (!last) throw new Error('sampling loop ran no steps');
    last.predXstart.dispose();
    return last.sample;
  }

  /** The shared reverse loop: i = T-1 .. 0, under noGrad, freeing each step's tensors after the next. */
  private *loop<K>(shape: readonly number[], o: SampleLoopOptions<K>,
    step: (x: Tensor, t: Tensor, noise: Tensor | undefined) => SampleStep): Generator<LoopStep, void, void> {
    const device: Device = o.device ?? o.noise?.device ?? 'cpu';
    if (o.noise && !sameShape(o.noise.shape, shape)) throw new Error(`sampling loop: noise [${o.noise.shape}] does not match shape [${shape}]`);
    let img = o.noise ?? torch.randn([...shape], { device, dtype: o.dtype });
    const ownsImg = o.noise === undefined;
    const total = this.numTimesteps;
    let prev: LoopStep | undefined;
    try {
      for (let s = 0; s < total; s++) {
        const i = total - 1 - s;
        const x = img;
        const out = torch.noGrad(() => torch.scope(() => {
          const t = torch.full([shape[0]], i, { dtype: 'int64', device });
          const noise = o.noiseFn ? o.noiseFn(s, x) : undefined;
          return step(x, t, noise);
        }));
        if (prev) {
          prev.sample.dispose();
          prev.predXstart.dispose();
        } else if (ownsImg) {
          img.dispose();
        }
        prev = { ...out, step: s, index: i };
        img = out.sample;
        o.progress?.(s + 1, total);
        yield prev;
      }
    } catch (e) {
      if (prev) {
        prev.sample.dispose();
        prev.predXstart.dispose();
      } else if (ownsImg) {
        img.dispose();
      }
      throw e;
    }
  }

  /**
   * Per-sample training terms at timesteps t ([N] int64 indices of this diffusion): 'loss', and for
   * the MSE objectives 'mse' (on eps / x_0 / x_{t-1}) and, with a learned variance, 'vb', the
   * variational-bound term in bits with the mean's gradient stopped (so it trains the variance only).
   */
  trainingLosses<K>(model: DiffusionModel<K>, xStart: Tensor, t: Tensor, o: TrainingLossOptions<K> = {}): TrainingLosses {
    const wrapped = this.wrapModel(model);
    return torch.scope(() => {
      const noise = o.noise ?? torch.randnLike(xStart);
      const xT = this.qSample(xStart, t, noise);
      if (this.lossType === 'kl' || this.lossType === 'rescaled_kl') {
        let loss = this.vbTermsBpd(wrapped, xStart, xT, t, { clipDenoised: false, modelKwargs: o.modelKwargs }).output;
        if (this.lossType === 'rescaled_kl') loss = loss.mul(this.numTimesteps);
        return { loss };
      }
      let modelOutput = wrapped(xT, t, o.modelKwargs as K);
      let vb: Tensor | undefined;
      if (isLearnedSigma(this.modelVarType)) {
        const [B, C] = xT.shape;
        const expected = [B, C * 2, ...xT.shape.slice(2)];
        if (!sameShape(modelOutput.shape, expected)) {
          throw new Error(`trainingLosses: model output [${modelOutput.shape}], expected [${expected}] (learned variance)`);
        }
        const [out, varValues] = modelOutput.split(C, 1);
        modelOutput = out;
        // Learn the variance with the variational bound, without letting it move the mean.
        const frozen = torch.cat([out.detach(), varValues], 1);
        const frozenModel = markWrapped((() => frozen) as DiffusionModel<unknown>);
        vb = this.vbTermsBpd(frozenModel, xStart, xT, t, { clipDenoised: false }).output;
        if (this.lossType === 'rescaled_mse') vb = vb.mul(this.numTimesteps / 1000.0);
      }
      const target = this.modelMeanType === 'previous_x' ? this.qPosteriorMeanVariance(xStart, xT, t).mean
        : this.modelMeanType === 'start_x' ? xStart : noise;
      if (!sameShape(modelOutput.shape, target.shape) || !sameShape(target.shape, xStart.shape)) {
        throw new Error(`trainingLosses: model output [${modelOutput.shape}] vs target [${target.shape}] vs x_start [${xStart.shape}]`);
      }
      const mse = meanFlat(target.sub(modelOutput).pow(2));
      const loss = vb ? mse.add(vb) : mse;
      return vb ? { loss, mse, vb } : { loss, mse };
    });
  }

  /** One term of the variational bound in bits per dimension (_vb_terms_bpd). */
  vbTermsBpd<K>(model: DiffusionModel<K>, xStart: Tensor, xT: Tensor, t: Tensor, o: PMeanVarianceOptions<K> = {}): VbTerms {
    return torch.scope(() => {
      const truePost = this.qPosteriorMeanVariance(xStart, xT, t);
      const out = this.pMeanVariance(model, xT, t, o);
      const kl = meanFlat(normalKl(truePost.mean, truePost.logVarianceClipped, out.mean, out.logVariance)).div(Math.LN2);
      const decoderNll = meanFlat(discretizedGaussianLogLikelihood(xStart, out.mean, out.logVariance.mul(0.5)).neg()).div(Math.LN2);
      // At the first timestep return the decoder NLL, otherwise KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)).
      const output = torch.where(t.eq(0), decoderNll, kl);
      return { output, predXstart: out.predXstart };
    });
  }

  /** KL(q(x_T | x_0) || N(0, I)) in bits per dimension, [N]. */
  priorBpd(xStart: Tensor): Tensor {
    return torch.scope(() => {
      const t = torch.full([xStart.shape[0]], this.numTimesteps - 1, { dtype: 'int64', device: xStart.device });
      const q = this.qMeanVariance(xStart, t);
      return meanFlat(normalKl(q.mean, q.logVariance, 0.0, 0.0)).div(Math.LN2);
    });
  }

  /** The whole variational bound in bits per dimension (plus per-step MSEs), one fresh noise draw per step. */
  calcBpdLoop<K>(model: DiffusionModel<K>, xStart: Tensor, o: PMeanVarianceOptions<K> = {}): BpdLoop {
    const wrapped = this.wrapModel(model);
    return torch.scope(() => {
      const vb: Tensor[] = [];
      const xstartMse: Tensor[] = [];
      const mse: Tensor[] = [];
      for (let i = this.numTimesteps - 1; i >= 0; i--) {
        const [v, xm, m] = torch.scope(() => {
          const t = torch.full([xStart.shape[0]], i, { dtype: 'int64', device: xStart.device });
          const noise = torch.randnLike(xStart);
          const xT = this.qSample(xStart, t, noise);
          const out = torch.noGrad(() => this.vbTermsBpd(wrapped, xStart, xT, t, { ...o, clipDenoised: o.clipDenoised ?? true }));
          const eps = this.predictEpsFromXstart(xT, t, out.predXstart);
          return [out.output, meanFlat(out.predXstart.sub(xStart).pow(2)), meanFlat(eps.sub(noise).pow(2))];
        });
        vb.push(v);
        xstartMse.push(xm);
        mse.push(m);
      }
      // Columns in loop order (t = T-1 first), as the reference stacks them.
      const vbT = torch.stack(vb, 1);
      const priorBpd = this.priorBpd(xStart);
      return {
        totalBpd: vbT.sum(1).add(priorBpd), priorBpd, vb: vbT, xstartMse: torch.stack(xstartMse, 1), mse: torch.stack(mse, 1),
      };
    });
  }
}
