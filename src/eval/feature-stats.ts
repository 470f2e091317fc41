// The mean and covariance of a feature set (what FID compares), in float64.
import * as torch from '../torch';
import { Tensor } from '../torch';

/** Mean and unbiased covariance of n feature vectors of dimension dim (sigma is dim x dim, row-major). */
export interface FeatureStats { mu: Float64Array; sigma: Float64Array; count: number; dim: number }

/** Rows per float64 block, so that huge sets never need a float64 copy of the whole matrix. */
const BLOCK_ROWS = 4096;

/** Checks that `features` is an [n, d] floating tensor with at least `minRows` rows; returns [n, d]. */
export function checkFeatures(features: Tensor, what: string, minRows: number): [number, number] {
  if (!(features instanceof Tensor)) throw new TypeError(`${what}: expected a Tensor of features [n, d]`);
  if (features.ndim !== 2) throw new RangeError(`${what}: expected features of shape [n, d], got [${features.shape}]`);
  if (!torch.isFloating(features.dtype)) throw new TypeError(`${what}: expected floating features, got ${features.dtype}`);
  const [n, d] = features.shape;
  if (d < 1) throw new RangeError(`${what}: features have dimension 0`);
  if (n < minRows) throw new RangeError(`${what}: needs at least ${minRows} feature vectors, got ${n}`);
  return [n, d];
}

/** Throws unless both feature sets have the same dimension, naming both. */
export function checkSameDim(da: number, db: number, what: string): void {
  if (da !== db) throw new RangeError(`${what}: feature dimensions differ (first set: ${da}, second set: ${db})`);
}

/**
 * float64 mean and unbiased covariance (n - 1 normalisation, as np.cov(rowvar=False)) of [n, d] features of any
 * float dtype, computed on the features' device. Two passes (mean, then the centred Gram matrix) in row blocks,
 * as np.cov centres before multiplying: the one-pass E[xx^T] - mu mu^T would cancel badly for features far
 * from the origin.
 */
export function featureStats(features: Tensor): FeatureStats {
  const [n, d] = checkFeatures(features, 'featureStats', 2);
  return torch.scope(() => {
    const blocks = Array.from({ length: Math.ceil(n / BLOCK_ROWS) }, (_, i) =>
      features.narrow(0, i * BLOCK_ROWS, Math.min(BLOCK_ROWS, n - i * BLOCK_ROWS)));
    const sum = torch.zeros([d], { dtype: 'float64', device: features.device });
    for (const b of blocks) torch.scope(() => { sum.add_(b.sum(0, false, 'float64')); });
    const mu = sum.div(n);
    if (!mu.isfinite().all().item()) throw new RangeError('featureStats: features contain NaN or infinite values');
    const gram = torch.zeros([d, d], { dtype: 'float64', device: features.device });
    for (const b of blocks) {
      torch.scope(() => {
        const centred = b.double().sub(mu);
        gram.add_(centred.t().mm(centred));
      });
    }
    const sigma = gram.div_(n - 1);
    return {
      mu: mu.cpu().data() as Float64Array, // data() copies, so the arrays outlive the tensors
      sigma: sigma.cpu().data() as Float64Array,
      count: n,
      dim: d,
    };
  });
}
