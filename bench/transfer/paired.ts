// Paired comparison of two methods (against full fine-tuning for the table, against Diff-Tuning for its
// ablations). Runs of the same target and seed share the training images,
// the evaluation labels and the starting noise of every evaluation sample, so FID_method − FID_full per seed
// cancels most of the sampling noise that dominates the per-cell standard deviations. Pure.

export interface PairedDifference {
  /** Mean of FID_method − FID_baseline over the paired runs (negative = the method is better). */
  mean: number;
  /** Sample standard deviation of those differences (0 for one pair). */
  std: number;
  /** Paired runs (same target and seed, both measured). */
  n: number;
  /** Pairs in which the method's FID is below the baseline's. */
  lower: number;
}

export interface PairedSummary extends PairedDifference {
  /** Two-sided sign test of "lower" against a fair coin over every pair; ties count as not lower. */
  sign_test_p: number;
}

export interface PairedComparison {
  targets: Record<string, PairedDifference>;
  /** Over every pair on every target. */
  all: PairedSummary;
}

function summarize(diffs: readonly number[]): PairedDifference {
  const n = diffs.length;
  const mean = diffs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(diffs.reduce((a, d) => a + (d - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n, lower: diffs.filter((d) => d < 0).length };
}

/** A p-value with three decimals, or in exponent form below 0.001 (so a tiny p never reads as 0.000). */
export function formatP(p: number): string {
  return p >= 0.001 ? p.toFixed(3) : p.toExponential(1);
}

/** P(|K − n/2| ≥ |k − n/2|) for K ~ Binomial(n, 1/2): the two-sided sign test. */
export function signTestP(k: number, n: number): number {
  if (!Number.isInteger(k) || !Number.isInteger(n) || n < 0 || k < 0 || k > n) {
    throw new RangeError(`signTestP: need integers 0 <= k <= n, got k=${k}, n=${n}`);
  }
  if (n === 0) return 1;
  // Binomial coefficients by the running product keep the exact ratio for the small n a benchmark has.
  const pmf: number[] = [];
  let c = 1;
  for (let i = 0; i <= n; i++) {
    pmf.push(c / 2 ** n);
    c = (c * (n - i)) / (i + 1);
  }
  const tail = Math.min(k, n - k);
  let p = 0;
  for (let i = 0; i <= tail; i++) p += pmf[i] + pmf[n - i];
  if (2 * tail === n) p -= pmf[tail];
  return Math.min(1, p);
}

/**
 * Paired differences of one method against a baseline method, per target and over all targets.
 * `fid(target, method, seed)` returns the measured FID or undefined; null when no pair exists.
 */
export function pairedAgainst(
  baseline: string, method: string, targets: readonly string[], seeds: readonly number[],
  fid: (target: string, method: string, seed: number) => number | undefined,
): PairedComparison | null {
  const perTarget: Record<string, PairedDifference> = {};
  const all: number[] = [];
  for (const target of targets) {
    const diffs: number[] = [];
    for (const seed of seeds) {
      const f = fid(target, baseline, seed);
      const m = fid(target, method, seed);
      if (f !== undefined && m !== undefined) diffs.push(m - f);
    }
    if (diffs.length) {
      perTarget[target] = summarize(diffs);
      all.push(...diffs);
    }
  }
  if (!all.length) return null;
  const s = summarize(all);
  return { targets: perTarget, all: { ...s, sign_test_p: signTestP(s.lower, s.n) } };
}
