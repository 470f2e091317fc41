// Per-timestep weights on the epsilon-MSE term: the loss-weighting baselines of the Diff-Tuning
// code (P2 and Min-SNR). As in the reference, they multiply the MSE term only, never the VB term
// of the hybrid loss (paper notes §4.3, D7).
//
// Tables are float64 over t = 0..T-1 (like the diffusion's coefficient tables) and are gathered
// at the batch's timesteps and cast to float32, as the reference's _extract_into_tensor does.
import * as torch from '../torch';
import { Tensor } from '../torch';

export type LossWeighting =
  | { kind: 'none' }
  /** P2 weighting (Choi et al.): 1 / (k + SNR)^gamma. */
  | { kind: 'p2'; k: number; gamma: number }
  /** Canonical Min-SNR-gamma for epsilon prediction (Hang et al.): min(SNR, gamma) / SNR. */
  | { kind: 'min-snr'; gamma: number }
  /**
   * The Diff-Tuning code's `--min-snr gamma`: min(SNR, gamma) on the epsilon-MSE, i.e. the canonical
   * weight times SNR. It stresses the low-noise steps instead of capping them (D6).
   */
  | { kind: 'min-snr-code'; gamma: number };

/** The reference's P2 constants (GaussianDiffusion.p2_k, p2_gamma). */
export const P2_DEFAULTS = { k: 1, gamma: 0.5 } as const;
/** The usual Min-SNR gamma. */
export const MIN_SNR_DEFAULT_GAMMA = 5;

/**
 * Signal-to-noise ratio per timestep, SNR = abar / (1 - abar), in float64. (The reference writes
 * 1/(1 - abar) - 1, the same number up to rounding.) Every abar must lie strictly inside (0, 1),
 * where SNR is finite and positive.
 */
export function snrTable(alphasCumprod: ArrayLike<number>): Float64Array {
  const n = alphasCumprod.length;
  if (n < 1) throw new RangeError('snrTable: alphasCumprod is empty');
  const snr = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    const a = alphasCumprod[t];
    if (!(typeof a === 'number' && a > 0 && a < 1)) {
      throw new RangeError(`snrTable: alphasCumprod[${t}] must lie strictly between 0 and 1, got ${String(a)}`);
    }
    snr[t] = a / (1 - a);
  }
  return snr;
}

function finiteAtLeast(value: unknown, min: number, strict: boolean, where: string, what: string): number {
  const ok = typeof value === 'number' && Number.isFinite(value) && (strict ? value > min : value >= min);
  if (!ok) throw new RangeError(`${where}: expected ${what} as a finite number ${strict ? '>' : '>='} ${min}, got ${typeof value === 'number' ? value : JSON.stringify(value) ?? String(value)}`);
  return value as number;
}

/**
 * The weight of each timestep's epsilon-MSE under w, float64 [T]; null for 'none' (no multiply at
 * all, so the unweighted loss stays bit-identical). Errors start with `field`, the setting w came from.
 */
export function lossWeightTable(w: LossWeighting, alphasCumprod: ArrayLike<number>, field = 'lossWeighting'): Float64Array | null {
  const kind = (w as { kind?: unknown } | null)?.kind;
  if (kind === 'none') return null;
  const snr = snrTable(alphasCumprod);
  switch (kind) {
    case 'p2': {
      const p = w as { k: unknown; gamma: unknown };
      const k = finiteAtLeast(p.k, 0, false, field, 'the P2 offset k');
      const gamma = finiteAtLeast(p.gamma, 0, false, field, 'the P2 exponent gamma');
      return snr.map((s) => 1 / Math.pow(k + s, gamma));
    }
    case 'min-snr': {
      const gamma = finiteAtLeast((w as { gamma: unknown }).gamma, 0, true, field, 'the Min-SNR cap gamma');
      return snr.map((s) => Math.min(s, gamma) / s);
    }
    case 'min-snr-code': {
      const gamma = finiteAtLeast((w as { gamma: unknown }).gamma, 0, true, field, 'the Min-SNR cap gamma');
      return snr.map((s) => Math.min(s, gamma));
    }
    default:
      throw new Error(`${field}: expected a loss weighting of kind 'none', 'p2', 'min-snr', 'min-snr-code', got kind ${JSON.stringify(kind) ?? String(kind)}`);
  }
}

/** table[t] as float32, same shape as t and on t's device (t: integer timesteps). */
export function gatherWeights(table: Float64Array, t: Tensor): Tensor {
  if (!['int64', 'int32', 'int16', 'int8', 'uint8'].includes(t.dtype)) {
    throw new TypeError(`gatherWeights: timesteps must be an integer tensor, got ${t.dtype}`);
  }
  return torch.scope(() => {
    const index = t.dtype === 'int64' ? t : t.long();
    return torch.fromTypedArray(table, undefined, { device: t.device }).index([index]).to({ dtype: 'float32' });
  });
}
