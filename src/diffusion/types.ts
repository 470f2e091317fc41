// The vocabulary of a Gaussian diffusion: what the model predicts, how its variance is chosen,
// which loss trains it, and the shape of a model function.
import type { Tensor } from '../torch';

/** What the model's (first C) output channels predict (ModelMeanType). */
export type ModelMeanType = 'previous_x' | 'start_x' | 'epsilon';

/**
 * How the reverse-process variance is obtained (ModelVarType): 'learned' (the model outputs the
 * log-variance), 'learned_range' (it outputs v in [-1, 1] interpolating between the posterior
 * variance and beta in log space), or one of the fixed choices (beta_t or the posterior variance).
 */
export type ModelVarType = 'learned' | 'fixed_small' | 'fixed_large' | 'learned_range';

/**
 * The training objective (LossType). 'mse' and 'rescaled_mse' use the epsilon (or x_0) MSE, plus
 * the variational bound term for learned variances ('rescaled_mse' scales it by T/1000); 'kl'
 * and 'rescaled_kl' train on the variational bound alone (rescaled: times T).
 */
export type LossType = 'mse' | 'rescaled_mse' | 'kl' | 'rescaled_kl';

export function isLearnedSigma(v: ModelVarType): boolean {
  return v === 'learned' || v === 'learned_range';
}

/**
 * A denoising model: x [N, C, ...], t [N] int64 timesteps of the ORIGINAL process (a respaced
 * diffusion maps its indices before calling), kwargs whatever the caller passed as modelKwargs
 * (labels, guidance scale, ...). Returns [N, C, ...], or [N, 2C, ...] with learned variances.
 */
export type DiffusionModel<K = unknown> = (x: Tensor, t: Tensor, kwargs: K) => Tensor;

/** A classifier-guidance function: the gradient of log p(y | x_t) with respect to x_t. */
export type CondFn<K = unknown> = (x: Tensor, t: Tensor, kwargs: K) => Tensor;

/** Output of p_mean_variance. */
export interface PMeanVariance {
  mean: Tensor;
  variance: Tensor;
  logVariance: Tensor;
  predXstart: Tensor;
}

/** One reverse step (p_sample, ddim_sample): the new x and the model's x_0 estimate. */
export interface SampleStep {
  sample: Tensor;
  predXstart: Tensor;
}

/** Per-sample training terms ([N] each): loss, and for the MSE objectives mse and (learned variance) vb. */
export interface TrainingLosses {
  loss: Tensor;
  mse?: Tensor;
  vb?: Tensor;
}
