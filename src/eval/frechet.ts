// The Fréchet distance between two Gaussians fitted to feature sets (the "FID" once the features are Inception's).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { aten } from '../torch/aten';
import { checkSameDim, FeatureStats } from './feature-stats';

const eighOp = aten('linalg_eigh');
const eigvalshOp = aten('linalg_eigvalsh');
const EPS = Number.EPSILON;

/**
 * ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), in float64.
 *
 * The cross term is computed without a matrix square root of S1 S2. With S1 = U diag(l) U^T, the
 * matrix M = S1^{1/2} S2 S1^{1/2} is symmetric PSD and has the same nonzero eigenvalues as
 * S1 S2 = S1^{1/2} (S1^{1/2} S2) (AB and BA share their nonzero eigenvalues, with multiplicities, for
 * any square A and B; no inverse is needed). So the eigenvalues of S1 S2 are real and >= 0, and
 * the principal root scipy's sqrtm computes has eigenvalues sqrt(eig(S1 S2)): its trace is
 * sum sqrt(eig(M)), which is what we compute. For singular covariances (fewer samples than
 * dimensions) S1 S2 can have a zero eigenvalue in a non-trivial Jordan block, where a matrix square
 * root does not exist and sqrtm returns inf/NaN or an inaccurate complex root; pytorch-fid then adds
 * eps * I to both covariances, which shifts the result. The trace sum above has no such problem: it
 * is also the nuclear norm of S1^{1/2} S2^{1/2}, well defined for every pair of PSD matrices.
 *
 * Rounding: eigenvalues that are zero in exact arithmetic come out as +-eps*max of either sign, and
 * sqrt turns each positive one into ~1e-8 * sqrt(max): summed over the ~d - n null directions of
 * a d = 2048, n = 300 covariance that biases the result by ~1e-6 relative. So eigenvalues below
 * size * eps * max (numpy's matrix_rank threshold) are taken as exact zeros, both in S1 and in M,
 * and M is formed only on S1's range (R^T S2 R with R = U_r diag(sqrt l_r), r x r), which is also
 * faster. tr sqrt(S1 S2) is symmetric in S1 and S2, so the side with fewer samples (lower rank)
 * is decomposed first.
 */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  checkStats(a, 'first');
  checkStats(b, 'second');
  checkSameDim(a.dim, b.dim, 'frechetDistance');
  const d = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (a.mu[i] - b.mu[i]) ** 2;
  let traces = 0;
  for (let i = 0; i < d; i++) traces += a.sigma[i * d + i] + b.sigma[i * d + i];
  const [first, second] = a.count <= b.count ? [a, b] : [b, a];
  return meanTerm + traces - 2 * traceSqrtProduct(first.sigma, second.sigma, d);
}

/** tr((S1 S2)^{1/2}) for symmetric PSD S1, S2 (d x d, row-major), through S1's eigendecomposition. */
export function traceSqrtProduct(sigma1: Float64Array, sigma2: Float64Array, d: number): number {
  return torch.scope(() => {
    const s1 = symmetric(sigma1, d);
    const s2 = symmetric(sigma2, d);
    const [valuesH, vectorsH] = eighOp(s1.h, 'L');
    const values = new Tensor(valuesH);
    const vectors = new Tensor(vectorsH);
    const l = values.data() as Float64Array; // ascending
    const rank = countAbove(l, d * EPS * Math.max(l[d - 1], 0));
    if (rank === 0) return 0;
    const root = vectors.narrow(1, d - rank, rank).mul(values.narrow(0, d - rank, rank).sqrt()); // U_r diag(sqrt l_r)
    const m = root.t().mm(s2).mm(root);
    const mSym = m.add(m.t()).mul(0.5);
    const mu = new Tensor(eigvalshOp(mSym.h, 'L')).data() as Float64Array;
    const cut = rank * EPS * Math.max(mu[rank - 1], 0);
    let sum = 0;
    for (const v of mu) if (v > cut) sum += Math.sqrt(v);
    return sum;
  });
}

/** (S + S^T) / 2 as a float64 tensor: covariances from a BLAS product can be asymmetric in the last bit. */
function symmetric(sigma: Float64Array, d: number): Tensor {
  const s = torch.fromTypedArray(sigma, [d, d]);
  return s.add(s.t()).mul(0.5);
}

function countAbove(ascending: Float64Array, threshold: number): number {
  let i = ascending.length;
  while (i > 0 && ascending[i - 1] > threshold) i--;
  return ascending.length - i;
}

function checkStats(s: FeatureStats, which: string): void {
  const what = `frechetDistance: the ${which} FeatureStats`;
  if (!s || !(s.mu instanceof Float64Array) || !(s.sigma instanceof Float64Array)) {
    throw new TypeError(`${what} must have Float64Array mu and sigma`);
  }
  if (!Number.isInteger(s.dim) || s.dim < 1) throw new RangeError(`${what} has dim ${s.dim}, expected a positive integer`);
  if (s.mu.length !== s.dim) throw new RangeError(`${what} has mu of length ${s.mu.length}, expected dim = ${s.dim}`);
  if (s.sigma.length !== s.dim * s.dim) {
    throw new RangeError(`${what} has sigma of length ${s.sigma.length}, expected dim^2 = ${s.dim * s.dim}`);
  }
  for (const v of s.mu) if (!Number.isFinite(v)) throw new RangeError(`${what} has a non-finite mean`);
  for (const v of s.sigma) if (!Number.isFinite(v)) throw new RangeError(`${what} has a non-finite covariance`);
}
