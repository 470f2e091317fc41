// Timestep samplers of DiT's diffusion/timestep_sampler.py (importance sampling of t for the
// training loss) and the plain uniform draw DiT's train.py actually uses. The Diff-Tuning
// (target / replay) distributions belong to the trainer, not here.
//
// The reference draws with numpy.random.choice; here draws go through torch.multinomial on
// libtorch's generator, so the distribution is the same but the numbers are not numpy's.
import * as torch from '../torch';
import { Device, Generator, Tensor } from '../torch';

/** DiT train.py: t ~ U{0, ..., numTimesteps-1}, int64 [n] (torch.randint, PyTorch's stream). */
export function uniformTimesteps(numTimesteps: number, n: number, o: { device?: Device; generator?: Generator } = {}): Tensor {
  return torch.randint(0, numTimesteps, [n], { device: o.device, generator: o.generator });
}

/** A distribution over timesteps that reweights the loss to keep it unbiased. */
export abstract class ScheduleSampler {
  constructor(readonly numTimesteps: number) {}

  /** Unnormalised positive weights, one per timestep. */
  abstract weights(): Float64Array;

  /**
   * Importance-samples n timesteps: indices [n] int64 and the loss weights 1 / (T p[t]) [n]
   * float32 that make the weighted loss an unbiased estimate of the uniform one.
   */
  sample(n: number, o: { device?: Device; generator?: Generator } = {}): { timesteps: Tensor; weights: Tensor } {
    const w = this.weights();
    let sum = 0;
    for (const v of w) sum += v;
    const p = w.map((v) => v / sum);
    return torch.scope(() => {
      const probs = torch.fromTypedArray(p);
      const idx = torch.multinomial(probs, n, true, o.generator);
      const weights = probs.index([idx]).mul(p.length).reciprocal().to({ dtype: 'float32' });
      return { timesteps: idx.to({ device: o.device ?? 'cpu' }), weights: weights.to({ device: o.device ?? 'cpu' }) };
    });
  }
}

export class UniformSampler extends ScheduleSampler {
  weights(): Float64Array {
    return new Float64Array(this.numTimesteps).fill(1);
  }
}

/** Samples t in proportion to the root mean square of its recent losses (plus a little uniform mass). */
export class LossSecondMomentResampler extends ScheduleSampler {
  private readonly history: Float64Array;
  private readonly counts: Int32Array;

  constructor(numTimesteps: number, readonly historyPerTerm = 10, readonly uniformProb = 0.001) {
    super(numTimesteps);
    this.history = new Float64Array(numTimesteps * historyPerTerm);
    this.counts = new Int32Array(numTimesteps);
  }

  weights(): Float64Array {
    const T = this.numTimesteps;
    const H = this.historyPerTerm;
    if (!this.warmedUp()) return new Float64Array(T).fill(1);
    const w = new Float64Array(T);
    let sum = 0;
    for (let t = 0; t < T; t++) {
      let m = 0;
      for (let k = 0; k < H; k++) m += this.history[t * H + k] ** 2;
      w[t] = Math.sqrt(m / H);
      sum += w[t];
    }
    for (let t = 0; t < T; t++) w[t] = (w[t] / sum) * (1 - this.uniformProb) + this.uniformProb / T;
    return w;
  }

  /** Records the per-sample losses observed at timesteps ts (keeps the last historyPerTerm per t). */
  updateWithAllLosses(ts: ArrayLike<number>, losses: ArrayLike<number>): void {
    const H = this.historyPerTerm;
    for (let j = 0; j < ts.length; j++) {
      const t = ts[j];
      if (this.counts[t] === H) {
        this.history.copyWithin(t * H, t * H + 1, (t + 1) * H);
        this.history[(t + 1) * H - 1] = losses[j];
      } else {
        this.history[t * H + this.counts[t]] = losses[j];
        this.counts[t] += 1;
      }
    }
  }

  private warmedUp(): boolean {
    return this.counts.every((c) => c === this.historyPerTerm);
  }
}

export type ScheduleSamplerName = 'uniform' | 'loss-second-moment';

export function createNamedScheduleSampler(name: ScheduleSamplerName, numTimesteps: number): ScheduleSampler {
  if (name === 'uniform') return new UniformSampler(numTimesteps);
  if (name === 'loss-second-moment') return new LossSecondMomentResampler(numTimesteps);
  throw new Error(`unknown schedule sampler '${String(name)}'`);
}
