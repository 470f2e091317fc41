// A seeded train/eval split of n examples. The eval set is a prefix of one seeded permutation,
// so for a given seed a smaller eval set is contained in a larger one.
import { hashSeed, seededPermutation } from './batch-iterator';

const SPLIT_STREAM = 3;

/** Disjoint sorted index lists covering 0..n-1; eval has evalCount (or round(evalFraction * n)) of them. */
export function splitIndices(n: number, o: { evalCount?: number; evalFraction?: number; seed: number }): { train: number[]; eval: number[] } {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`splitIndices: n must be an integer >= 0, got ${n}`);
  if (!Number.isSafeInteger(o.seed)) throw new RangeError(`splitIndices: seed must be an integer, got ${o.seed}`);
  if ((o.evalCount === undefined) === (o.evalFraction === undefined)) {
    throw new RangeError('splitIndices: give exactly one of evalCount and evalFraction');
  }
  let k: number;
  if (o.evalCount !== undefined) {
    if (!Number.isInteger(o.evalCount) || o.evalCount < 0 || o.evalCount > n) {
      throw new RangeError(`splitIndices: evalCount must be an integer in 0..${n}, got ${o.evalCount}`);
    }
    k = o.evalCount;
  } else {
    const f = o.evalFraction!;
    if (!(f >= 0 && f <= 1)) throw new RangeError(`splitIndices: evalFraction must be in [0, 1], got ${f}`);
    k = Math.round(f * n);
  }
  const perm = seededPermutation(n, hashSeed(o.seed, SPLIT_STREAM));
  const ascending = (a: number, b: number) => a - b;
  return {
    train: Array.from(perm.subarray(k)).sort(ascending),
    eval: Array.from(perm.subarray(0, k)).sort(ascending),
  };
}
