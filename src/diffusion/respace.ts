// Timestep respacing (DiT's diffusion/respace.py, without the model wrapper, which lives in
// spaced-diffusion.ts): which of the original steps a shorter sampler keeps, and the betas of
// the shortened process.

/** Python 3's round() on a float: to the nearest integer, exact halves to the even neighbour. */
export function pyRound(x: number): number {
  if (!Number.isFinite(x)) throw new RangeError(`pyRound: ${x} is not finite`);
  const f = Math.floor(x);
  const d = x - f; // exact for |x| < 2^52
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function parseCount(s: string, spec: string): number {
  const trimmed = s.trim();
  if (!/^[+-]?\d+$/.test(trimmed)) throw new Error(`spaceTimesteps: cannot parse '${s}' in '${spec}' as an integer`);
  return Number.parseInt(trimmed, 10);
}

/**
 * space_timesteps(num_timesteps, section_counts): the original steps to keep.
 *
 * The process is split into len(section_counts) equal sections (the first ones one step longer
 * when it does not divide) and section k keeps section_counts[k] steps spread evenly over it,
 * at start + round(j * stride) with stride = (size-1)/(count-1) accumulated in float64 and
 * Python's round (half to even): "25" over 1000 steps keeps 166 and 832, not 167 and 833.
 * "ddimN" instead keeps range(0, T, s) for the integer stride s that gives exactly N steps.
 *
 * The result is sorted ascending (the Python function returns a set).
 */
export function spaceTimesteps(numTimesteps: number, sectionCounts: string | readonly number[]): number[] {
  const T = numTimesteps;
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`spaceTimesteps: numTimesteps must be a positive integer, got ${T}`);
  let counts: number[];
  if (typeof sectionCounts === 'string') {
    if (sectionCounts.startsWith('ddim')) {
      const desired = parseCount(sectionCounts.slice('ddim'.length), sectionCounts);
      for (let i = 1; i < T; i++) {
        if (Math.ceil(T / i) === desired) {
          const steps: number[] = [];
          for (let s = 0; s < T; s += i) steps.push(s);
          return steps;
        }
      }
      // (The official message names num_timesteps where it means the desired count.)
      throw new Error(`spaceTimesteps: cannot create exactly ${desired} steps out of ${T} with an integer stride`);
    }
    counts = sectionCounts.split(',').map((p) => parseCount(p, sectionCounts));
  } else {
    counts = [...sectionCounts];
    for (const c of counts) if (!Number.isInteger(c)) throw new Error(`spaceTimesteps: section count ${c} is not an integer`);
  }
  if (counts.length === 0) throw new Error('spaceTimesteps: no sections');
  const sizePer = Math.floor(T / counts.length);
  const extra = T % counts.length;
  let startIdx = 0;
  const all = new Set<number>();
  counts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) throw new Error(`spaceTimesteps: cannot divide section of ${size} steps into ${count}`);
    const fracStride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let curIdx = 0.0;
    for (let j = 0; j < count; j++) {
      all.add(startIdx + pyRound(curIdx));
      curIdx += fracStride;
    }
    startIdx += size;
  });
  return [...all].sort((a, b) => a - b);
}

/** The betas of a respaced process and which original step each new step stands for. */
export interface Respaced {
  /** beta_k = 1 - ac[t_k] / ac[t_{k-1}] (with ac[t_{-1}] = 1), float64. */
  betas: Float64Array;
  /** timestep_map: original index t_k of respaced step k, ascending. */
  timestepMap: number[];
}

/**
 * The SpacedDiffusion constructor's loop: walks the original alphas_cumprod and recomputes a beta
 * for each kept step so that the kept steps have the same alphas_cumprod as in the original
 * process. Even keeping every step gives betas that differ from the original by ~1e-16.
 */
export function respaceBetas(alphasCumprod: ArrayLike<number>, useTimesteps: Iterable<number>): Respaced {
  const use = new Set(useTimesteps);
  for (const t of use) {
    if (!Number.isInteger(t) || t < 0 || t >= alphasCumprod.length) {
      throw new RangeError(`respaceBetas: timestep ${t} is outside 0..${alphasCumprod.length - 1}`);
    }
  }
  const betas: number[] = [];
  const timestepMap: number[] = [];
  let last = 1.0;
  for (let i = 0; i < alphasCumprod.length; i++) {
    if (use.has(i)) {
      betas.push(1 - alphasCumprod[i] / last);
      last = alphasCumprod[i];
      timestepMap.push(i);
    }
  }
  if (timestepMap.length === 0) throw new Error('respaceBetas: no timesteps kept');
  return { betas: Float64Array.from(betas), timestepMap };
}
