// Likelihood helpers of DiT's diffusion/diffusion_utils.py: Gaussian KL divergence and the
// discretised Gaussian log-likelihood of the decoder, in nats, elementwise. Operation order
// follows the reference so float32 results agree to rounding.
import * as torch from '../torch';
import { Tensor } from '../torch';

/** Mean over every dimension but the first (mean_flat). */
export function meanFlat(x: Tensor): Tensor {
  if (x.ndim <= 1) return x.clone();
  return x.mean(Array.from({ length: x.ndim - 1 }, (_, i) => i + 1));
}

/**
 * KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise; numbers broadcast (they
 * become 0-d tensors of the dtype and device of the first tensor argument).
 */
export function normalKl(mean1: Tensor | number, logvar1: Tensor | number, mean2: Tensor | number, logvar2: Tensor | number): Tensor {
  const like = [mean1, logvar1, mean2, logvar2].find((v): v is Tensor => typeof v === 'object');
  if (!like) throw new TypeError('normalKl: at least one argument must be a tensor');
  return torch.scope(() => {
    const asT = (v: Tensor | number): Tensor => (typeof v === 'object' ? v : torch.scalarLike(like, v));
    const lv1 = asT(logvar1);
    const lv2 = asT(logvar2);
    const diff = typeof mean1 === 'object' ? mean1.sub(mean2) : asT(mean1).sub(mean2);
    // 0.5 * (-1.0 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)**2 * exp(-logvar2))
    return lv2.add(-1.0).sub(lv1).add(lv1.sub(lv2).exp()).add(diff.pow(2).mul(lv2.neg().exp())).mul(0.5);
  });
}

/** The tanh approximation of the standard normal CDF (Page 1977), as the reference uses it. */
export function approxStandardNormalCdf(x: Tensor): Tensor {
  return torch.scope(() =>
    x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2.0 / Math.PI)).tanh().add(1.0).mul(0.5));
}

/** log N(x; means, exp(log_scales)^2) of a continuous Gaussian, elementwise. */
export function continuousGaussianLogLikelihood(x: Tensor, means: Tensor, logScales: Tensor): Tensor {
  return torch.scope(() => {
    const normalized = x.sub(means).mul(logScales.neg().exp());
    // Normal(0, 1).log_prob(z) = -z^2/2 - log(sqrt(2 pi))
    return normalized.pow(2).neg().div(2).sub(Math.log(Math.sqrt(2 * Math.PI)));
  });
}

/**
 * Log-likelihood of x (data in [-1, 1], 8-bit bins of width 2/255) under a Gaussian decoder,
 * elementwise: the mass of the bin around x, with the outermost bins extended to infinity.
 */
export function discretizedGaussianLogLikelihood(x: Tensor, means: Tensor, logScales: Tensor): Tensor {
  const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
  if (!same(x.shape, means.shape) || !same(x.shape, logScales.shape)) {
    throw new Error(`discretizedGaussianLogLikelihood: shapes differ: x [${x.shape}], means [${means.shape}], logScales [${logScales.shape}]`);
  }
  return torch.scope(() => {
    const centered = x.sub(means);
    const invStdv = logScales.neg().exp();
    const cdfPlus = approxStandardNormalCdf(invStdv.mul(centered.add(1.0 / 255.0)));
    const cdfMin = approxStandardNormalCdf(invStdv.mul(centered.sub(1.0 / 255.0)));
    const logCdfPlus = cdfPlus.clamp(1e-12).log();
    const logOneMinusCdfMin = cdfMin.rsub(1.0).clamp(1e-12).log();
    const cdfDelta = cdfPlus.sub(cdfMin);
    const inner = torch.where(x.gt(0.999), logOneMinusCdfMin, cdfDelta.clamp(1e-12).log());
    return torch.where(x.lt(-0.999), logCdfPlus, inner);
  });
}
