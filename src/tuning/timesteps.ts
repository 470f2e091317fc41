// Diff-Tuning's timestep laws (paper notes §3.2, D1): the target sub-batch trains on t drawn
// towards the noise end, psi(t) ∝ (t+1)^tau, and the replay sub-batch towards the data end,
// xi(t) ∝ (T-t)^tau, over t = 0..T-1 with t = 0 the least noisy step. The reference samples t from
// these laws; the paper writes them as loss weights. Both are offered: sample() draws t, and
// lossWeights() gives the weight T*p[t] that turns uniformly drawn t into the same objective in
// expectation.
//
// Powers are >= 0. The reference cannot ask for a negative one (its --LWF-prob-scale -1 is a
// sentinel for "same as the target power"), and a negative power would flip a law towards the
// other end, which the other kind already says plainly.
import * as fs from 'node:fs';
import * as torch from '../torch';
import { Device, Generator, Tensor } from '../torch';
import { gatherWeights } from './loss-weights';

export type TimestepLaw =
  | { kind: 'uniform' }
  /** p[t] ∝ (t+1)^tau: reconsolidation, psi (the reference indexes t = 1..T). */
  | { kind: 'noise-end'; tau: number }
  /** p[t] ∝ (T-t)^tau: retention, xi. */
  | { kind: 'data-end'; tau: number }
  /** p[t] ∝ weights[t], one non-negative weight per timestep; source names where they came from. */
  | { kind: 'weights'; weights: ArrayLike<number>; source?: string };

const KINDS = ['uniform', 'noise-end', 'data-end', 'weights'];

export class TimestepDistribution {
  private weightTable?: Float64Array;

  private constructor(
    /** p[t] for t = 0..T-1, summing to 1 (float64). */
    readonly probs: Float64Array,
    readonly numTimesteps: number,
    readonly law: TimestepLaw,
  ) {}

  /**
   * Validates law against T timesteps. Errors start with `field`, the setting the law came from
   * (e.g. "objective.timesteps.target" or "objective.tau"), and say what was expected.
   */
  static create(law: TimestepLaw, numTimesteps: number, field = 'timesteps'): TimestepDistribution {
    const T = numTimesteps;
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`${field}: the number of timesteps must be a positive integer, got ${T}`);
    const kind = (law as { kind?: unknown } | null)?.kind;
    let weights: Float64Array;
    switch (kind) {
      case 'uniform':
        weights = new Float64Array(T).fill(1);
        break;
      case 'noise-end':
      case 'data-end': {
        const tau = checkPower((law as { tau?: unknown }).tau, kind, field);
        // rank^tau as the reference writes it; ranks are divided by T first only where T^tau * T
        // would overflow a double.
        const unit = (tau + 1) * Math.log(T) < 700 ? 1 : T;
        weights = new Float64Array(T);
        for (let t = 0; t < T; t++) weights[t] = Math.pow((kind === 'noise-end' ? t + 1 : T - t) / unit, tau);
        break;
      }
      case 'weights': {
        const w = law as { weights?: ArrayLike<number>; source?: string };
        weights = checkWeights(w.weights, T, w.source ? `${field} (from ${w.source})` : field);
        break;
      }
      default:
        throw new Error(`${field}: expected a timestep law of kind ${KINDS.map((k) => `'${k}'`).join(', ')}, got kind ${describe(kind)}`);
    }
    return new TimestepDistribution(normalise(weights), T, law);
  }

  /** E[t]. */
  mean(): number {
    let m = 0;
    for (let t = 0; t < this.numTimesteps; t++) m += t * this.probs[t];
    return m;
  }

  /**
   * n timesteps drawn independently from the law, int64 [n], by torch.multinomial (with replacement)
   * on the generator (default: the global CPU generator, as the reference's Categorical draw), so
   * the random state is torch's and a checkpoint can save it. The draw runs on the generator's
   * device; the result moves to `device` if another is given.
   */
  sample(n: number, o: { generator?: Generator; device?: Device } = {}): Tensor {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`TimestepDistribution.sample: n must be a non-negative integer, got ${n}`);
    const drawDevice: Device = o.generator?.device ?? 'cpu';
    return torch.scope(() => {
      // torch.multinomial refuses zero samples, so the empty draw is built directly.
      const t = n === 0
        ? torch.empty([0], { dtype: 'int64', device: drawDevice })
        : torch.multinomial(torch.fromTypedArray(this.probs, undefined, { device: drawDevice }), n, true, o.generator);
      return o.device !== undefined && o.device !== drawDevice ? t.to({ device: o.device }) : t;
    });
  }

  /**
   * The paper's written form: the weight T*p[t] of each timestep in t (float32, t's shape and
   * device). With t uniform on 0..T-1, E[T p[t] f(t)] = sum_t p[t] f(t), the sampling mode's mean.
   */
  lossWeights(t: Tensor): Tensor {
    this.weightTable ??= this.probs.map((p) => p * this.numTimesteps);
    return gatherWeights(this.weightTable, t);
  }
}

function checkPower(tau: unknown, kind: string, where: string): number {
  if (typeof tau !== 'number' || !Number.isFinite(tau) || tau < 0) {
    throw new RangeError(
      `${where}: expected the power tau of the ${kind} law as a finite number >= 0 (0 is uniform, 1 linear), got ${describe(tau)}` +
        (typeof tau === 'number' && tau < 0 ? '; to favour the other end use the other kind (noise-end / data-end)' : ''),
    );
  }
  return tau;
}

/** T finite non-negative weights with a positive sum, as a Float64Array; errors name `where`. */
function checkWeights(weights: unknown, T: number, where: string): Float64Array {
  const w = weights as ArrayLike<unknown> | undefined;
  if (w === null || typeof w !== 'object' || typeof w.length !== 'number') {
    throw new TypeError(`${where}: expected an array of ${T} weights (one per timestep t = 0..${T - 1}), got ${describe(weights)}`);
  }
  if (w.length !== T) throw new RangeError(`${where}: expected ${T} weights (one per timestep t = 0..${T - 1}), got ${w.length}`);
  const out = new Float64Array(T);
  let positive = false;
  for (let t = 0; t < T; t++) {
    const v = w[t];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new RangeError(`${where}[${t}]: expected a finite number >= 0, got ${describe(v)}`);
    }
    out[t] = v;
    if (v > 0) positive = true;
  }
  if (!positive) throw new RangeError(`${where}: the weights sum to 0; at least one timestep needs a positive weight`);
  return out;
}

function describe(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return JSON.stringify(v) ?? String(v);
}

/** w / sum(w) in float64 (finite, non-negative w with a positive sum). */
function normalise(w: Float64Array): Float64Array {
  let sum = 0;
  for (const v of w) sum += v;
  if (Number.isFinite(sum)) return w.map((v) => v / sum);
  // Huge weights: divide by the largest first so that the sum stays finite.
  let max = 0;
  for (const v of w) if (v > max) max = v;
  return normalise(w.map((v) => v / max));
}

/**
 * A weight vector from a JSON file: an array of numTimesteps finite non-negative numbers (weight
 * of t = 0 first) with a positive sum. Errors name the file.
 */
export function readTimestepWeights(file: string, numTimesteps: number): Float64Array {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read the timestep weights (${(e as Error).message})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message}); expected an array of ${numTimesteps} timestep weights`);
  }
  if (!Array.isArray(data)) {
    throw new TypeError(`${file}: expected a JSON array of ${numTimesteps} timestep weights (t = 0 first), got ${typeof data === 'object' && data !== null ? 'an object' : describe(data)}`);
  }
  return checkWeights(data, numTimesteps, file);
}
