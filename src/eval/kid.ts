// Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a polynomial kernel, over random subsets.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { checkFeatures, checkSameDim } from './feature-stats';

/** One subset: row indices into the first (a) and second (b) feature set, the same count of each. */
export interface KidSubset { a: readonly number[]; b: readonly number[] }

export interface KidOptions {
  /** Random subsets to average over (default 100). */
  subsets?: number;
  /** Rows per subset from each set (default 1000; clipped to the smaller set, with a warning). */
  subsetSize?: number;
  /** Kernel k(x, y) = (gamma <x, y> + coef0)^degree; defaults 3, 1/d, 1 as in the paper. */
  degree?: number;
  gamma?: number;
  coef0?: number;
  /** Seed of the subset draws (default 0). */
  seed?: number;
  /** Explicit subsets (row indices into a and b, the same count in each); replaces subsets/subsetSize/seed. */
  subsetIndices?: readonly KidSubset[];
  /** Where warnings go (default console.warn). */
  warn?: (message: string) => void;
}

/**
 * KID between feature sets a [n_a, d] and b [n_b, d]: the mean and the standard deviation (ddof = 0, as
 * torch-fidelity reports it) of the unbiased MMD^2 estimate over subsets drawn without replacement.
 * Unbiased means the diagonal k(x_i, x_i) terms are left out of the within-set sums, so two samples of
 * one distribution give 0 on average (single subsets can be negative). float64 on the features' device.
 */
export function kid(a: Tensor, b: Tensor, o: KidOptions = {}): { mean: number; std: number } {
  const [na, d] = checkFeatures(a, 'kid: first feature set', 2);
  const [nb, db] = checkFeatures(b, 'kid: second feature set', 2);
  checkSameDim(d, db, 'kid');
  const degree = o.degree ?? 3;
  const gamma = o.gamma ?? 1 / d;
  const coef0 = o.coef0 ?? 1;
  if (!Number.isInteger(degree) || degree < 1) throw new RangeError(`kid: degree must be a positive integer, got ${degree}`);
  if (!Number.isFinite(gamma) || !Number.isFinite(coef0)) throw new RangeError(`kid: gamma and coef0 must be finite, got ${gamma}, ${coef0}`);
  const subsets = o.subsetIndices ? checkSubsets(o.subsetIndices, na, nb) : drawSubsets(na, nb, o);
  const values = torch.scope(() => {
    const a64 = a.double();
    const b64 = b.double();
    const kernelSum = (x: Tensor, y: Tensor): Tensor => x.mm(y.t()).mul(gamma).add(coef0).pow(degree).sum();
    const kernelDiag = (x: Tensor): Tensor => x.square().sum(1).mul(gamma).add(coef0).pow(degree).sum();
    const perSubset = subsets.map(([ia, ib]) => torch.scope(() => {
      const m = ia.length;
      const x = a64.indexSelect(0, indexTensor(ia, a.device));
      const y = b64.indexSelect(0, indexTensor(ib, b.device));
      const within = kernelSum(x, x).sub(kernelDiag(x)).add(kernelSum(y, y)).sub(kernelDiag(y)).div(m * (m - 1));
      return within.sub(kernelSum(x, y).mul(2 / (m * m)));
    }));
    return torch.stack(perSubset).cpu().data() as Float64Array;
  });
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
  return { mean, std: Math.sqrt(variance) };
}

function indexTensor(rows: readonly number[], device: torch.Device): Tensor {
  return torch.fromTypedArray(BigInt64Array.from(rows, (i) => BigInt(i)), [rows.length], { device });
}

/** Random subsets without replacement, from a generator of their own (the global one is left alone). */
function drawSubsets(na: number, nb: number, o: KidOptions): [number[], number[]][] {
  const count = o.subsets ?? 100;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`kid: subsets must be a positive integer, got ${count}`);
  const requested = o.subsetSize ?? 1000;
  if (!Number.isInteger(requested) || requested < 2) throw new RangeError(`kid: subsetSize must be an integer >= 2, got ${requested}`);
  const size = Math.min(requested, na, nb);
  if (size < requested) {
    (o.warn ?? console.warn)(`kid: subsetSize ${requested} is more than the feature sets hold (${na} and ${nb} rows); using ${size}`);
  }
  const gen = new torch.Generator('cpu', o.seed ?? 0);
  const draw = (n: number): number[] => torch.scope(() => torch.randperm(n, { generator: gen }).narrow(0, 0, size).toArray());
  return Array.from({ length: count }, () => [draw(na), draw(nb)]);
}

function checkSubsets(subsets: readonly KidSubset[], na: number, nb: number): [number[], number[]][] {
  if (subsets.length === 0) throw new RangeError('kid: subsetIndices is empty');
  return subsets.map((s, k) => {
    const rows = (list: readonly number[], n: number, which: string): number[] => {
      for (const i of list) {
        if (!Number.isInteger(i) || i < 0 || i >= n) {
          throw new RangeError(`kid: subsetIndices[${k}].${which} holds ${i}, expected a row index in [0, ${n})`);
        }
      }
      return [...list];
    };
    if (s.a.length !== s.b.length || s.a.length < 2) {
      throw new RangeError(`kid: subsetIndices[${k}] has ${s.a.length} and ${s.b.length} rows, expected the same count >= 2`);
    }
    return [rows(s.a, na, 'a'), rows(s.b, nb, 'b')];
  });
}
