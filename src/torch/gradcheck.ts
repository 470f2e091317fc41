// Gradient checking: autograd's gradients against central finite differences, in float64.
//
// The check projects the outputs onto fixed random weights, L = sum_k (y_k * w_k).sum(), so
// one backward pass gives the vector-Jacobian product J^T w for every input, and each input
// element needs two forward passes for (L(x + eps) - L(x - eps)) / 2eps. A wrong Jacobian
// entry shows up unless its error happens to be orthogonal to the random weights.
import { enableGrad, grad, noGrad } from './autograd';
import { randn } from './creation';
import { Generator } from './random';
import { scope } from './scope';
import { Tensor } from './tensor';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  /** Absolute tolerance (default 1e-5). */
  atol?: number;
  /** Relative tolerance, against the numerical gradient (default 1e-3). */
  rtol?: number;
  /** Seed of the random output weights (default 0). */
  seed?: number;
  /** How many mismatches to report in `details` (default 10). */
  maxDetails?: number;
}

/** One input element whose analytical and numerical gradients disagree. */
export interface GradcheckMismatch {
  /** Position of the input in the `inputs` array. */
  input: number;
  /** Flat (C-order) index of the element within that input. */
  index: number;
  analytic: number;
  numeric: number;
  error: number;
}

export interface GradcheckResult {
  ok: boolean;
  /** The largest |analytic - numeric| over every checked element. */
  maxError: number;
  /** The first mismatches (at most maxDetails). */
  details: GradcheckMismatch[];
  /** How many mismatches there were in all. */
  mismatches: number;
  /** How many input elements were checked. */
  checked: number;
  /** A one-paragraph summary (also the message of assertGradcheck's error). */
  message: string;
}

type GradFn = (...xs: Tensor[]) => Tensor | Tensor[];

function outputsOf(value: Tensor | Tensor[]): Tensor[] {
  const outs = Array.isArray(value) ? value : [value];
  outs.forEach((y, k) => {
    if (!(y instanceof Tensor)) throw new TypeError(`gradcheck: fn must return a Tensor or Tensor[] (output ${k} is not one)`);
    if (y.dtype !== 'float64') throw new TypeError(`gradcheck: output ${k} is ${y.dtype}; the check needs float64 outputs`);
  });
  return outs;
}

/** sum_k (outs[k] * weights[k]).sum() as a 0-d tensor. */
function project(outs: Tensor[], weights: Tensor[]): Tensor {
  let total: Tensor | null = null;
  outs.forEach((y, k) => {
    const term = y.mul(weights[k]).sum();
    total = total === null ? term : total.add(term);
  });
  return total!;
}

/** A view of one element of t (the flat C-order index), for writing it in place. */
function elementOf(t: Tensor, index: number, shape: number[]): Tensor {
  let rest = index;
  const coords = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    coords[d] = rest % shape[d];
    rest = Math.floor(rest / shape[d]);
  }
  let cur = t;
  for (const c of coords) cur = cur.select(0, c);
  return cur;
}

/**
 * Compares autograd's gradients of fn with central finite differences for every input that
 * requires grad (those must be float64 and must not overlap in memory; fn must not modify
 * its inputs). Returns the verdict rather than throwing; see assertGradcheck.
 */
export function gradcheck(fn: GradFn, inputs: Tensor[], o: GradcheckOptions = {}): GradcheckResult {
  const eps = o.eps ?? 1e-6;
  const atol = o.atol ?? 1e-5;
  const rtol = o.rtol ?? 1e-3;
  const maxDetails = o.maxDetails ?? 10;
  const wrt = inputs.map((_, k) => k).filter((k) => inputs[k].requiresGrad);
  if (wrt.length === 0) throw new Error('gradcheck: no input requires grad (set requiresGrad on the inputs to check)');
  for (const k of wrt) {
    if (inputs[k].dtype !== 'float64') {
      throw new TypeError(`gradcheck: input ${k} is ${inputs[k].dtype}; finite differences need float64 inputs`);
    }
  }

  return scope(() => {
    const generator = new Generator('cpu', o.seed ?? 0);
    // Recorded even when called inside noGrad.
    const outs = enableGrad(() => outputsOf(fn(...inputs)));
    const weights = outs.map((y) => randn(y.shape, { dtype: 'float64', generator }));
    const loss = enableGrad(() => project(outs, weights));
    const sizes = wrt.map((k) => inputs[k].numel);
    let analytic: number[][];
    if (loss.requiresGrad) {
      const gs = grad([loss], wrt.map((k) => inputs[k]), undefined, { allowUnused: true });
      analytic = gs.map((g, j) => (g ? g.toArray() : new Array<number>(sizes[j]).fill(0)));
    } else {
      analytic = sizes.map((n) => new Array<number>(n).fill(0));
    }

    const evaluate = (): number => scope(() => project(outputsOf(fn(...inputs)), weights).item());
    const numeric: number[][] = noGrad(() => wrt.map((k) => {
      const x = inputs[k];
      const shape = x.shape;
      const values = x.toArray();
      return values.map((v, index) => scope(() => {
        const elem = elementOf(x, index, shape);
        elem.fill_(v + eps);
        const plus = evaluate();
        elem.fill_(v - eps);
        const minus = evaluate();
        elem.fill_(v);
        return (plus - minus) / (2 * eps);
      }));
    }));

    let maxError = 0;
    let mismatches = 0;
    let checked = 0;
    const details: GradcheckMismatch[] = [];
    wrt.forEach((k, j) => {
      for (let index = 0; index < sizes[j]; index++) {
        const a = analytic[j][index];
        const n = numeric[j][index];
        const error = Math.abs(a - n);
        checked++;
        if (Number.isNaN(error) || error > maxError) maxError = Number.isNaN(maxError) ? maxError : error;
        if (!(error <= atol + rtol * Math.abs(n))) {
          mismatches++;
          if (details.length < maxDetails) details.push({ input: k, index, analytic: a, numeric: n, error });
        }
      }
    });
    const ok = mismatches === 0;
    const message = ok
      ? `gradcheck passed: ${checked} elements, max |analytic - numeric| = ${maxError}`
      : `gradcheck failed: ${mismatches} of ${checked} elements differ (max |analytic - numeric| = ${maxError}, ` +
        `atol ${atol}, rtol ${rtol}); ` +
        details.map((d) => `input ${d.input}[${d.index}]: analytic ${d.analytic}, numeric ${d.numeric}`).join('; ');
    return { ok, maxError, details, mismatches, checked, message };
  });
}

/** gradcheck that throws an Error carrying the summary when the gradients disagree. */
export function assertGradcheck(fn: GradFn, inputs: Tensor[], o: GradcheckOptions = {}): GradcheckResult {
  const result = gradcheck(fn, inputs, o);
  if (!result.ok) throw new Error(result.message);
  return result;
}
