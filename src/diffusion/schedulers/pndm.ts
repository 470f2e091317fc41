// diffusers' PNDMScheduler (Liu et al., "Pseudo Numerical Methods for Diffusion Models on
// Manifolds"): linear multistep (PLMS) updates over the last four eps, after a Runge-Kutta
// (PRK) warm-up, or, with skip_prk_steps as Stable Diffusion configures it, after one
// second-order step that repeats the second timestep. The scheduler keeps the eps history;
// dispose() (or setTimesteps) frees it.
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import { f32, Scheduler, spacedTimesteps, sqrt32 } from './base';
import { SchedulerConfig, schedulerConfig, schedulerConfigFromJson } from './config';

const PNDM_ORDER = 4;

export class PndmScheduler extends Scheduler {
  readonly finalAlphaCumprod: number;
  /** The Runge-Kutta warm-up timesteps (empty with skipPrkSteps). */
  prkTimesteps: number[] = [];
  plmsTimesteps: number[] = [];
  /** Steps taken since setTimesteps. */
  counter = 0;
  /** The eps history (the last 4 used by PLMS), kept by the scheduler. */
  private ets: Tensor[] = [];
  private curSample: Tensor | null = null;
  private curModelOutput: Tensor | null = null;

  constructor(config: Partial<SchedulerConfig> = {}) {
    super(schedulerConfig('pndm', config));
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1.0 : this.alphasCumprod[0];
    if (this.config.predictionType === 'sample') throw new Error("PndmScheduler: prediction_type 'sample' is not supported (epsilon or v_prediction)");
  }

  /** PNDMScheduler.from_config(json), e.g. Stable Diffusion's scheduler_config.json. */
  static fromConfig(json: Readonly<Record<string, unknown>>, where?: string): PndmScheduler {
    return new PndmScheduler(schedulerConfigFromJson('pndm', json, where));
  }

  /** How many eps the PLMS history holds (for tests and memory checks). */
  get historyLength(): number {
    return this.ets.length;
  }

  override setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const T = c.numTrainTimesteps;
    const asc = spacedTimesteps(T, numInferenceSteps, c.timestepSpacing, c.stepsOffset);
    this.numInferenceSteps = numInferenceSteps;
    if (c.skipPrkSteps) {
      // PLMS only: the second-to-last (in time, the second) timestep appears twice.
      this.prkTimesteps = [];
      this.plmsTimesteps = [...asc.slice(0, -1), ...asc.slice(-2, -1), ...asc.slice(-1)].reverse();
    } else {
      if (asc.length < PNDM_ORDER) throw new RangeError(`PndmScheduler: the Runge-Kutta warm-up needs at least ${PNDM_ORDER} inference steps, got ${numInferenceSteps}`);
      const half = Math.floor(Math.floor(T / numInferenceSteps) / 2);
      const pairs = asc.slice(-PNDM_ORDER).flatMap((t) => [t, t + half]);
      const doubled = pairs.slice(0, -1).flatMap((t) => [t, t]);
      this.prkTimesteps = doubled.slice(1, -1).reverse();
      this.plmsTimesteps = asc.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.resetState();
  }

  /** Frees the eps history and stored sample and restarts the step counter. */
  resetState(): void {
    for (const e of this.ets) e.dispose();
    this.ets = [];
    this.curSample?.dispose();
    this.curSample = null;
    this.curModelOutput?.dispose();
    this.curModelOutput = null;
    this.counter = 0;
  }

  dispose(): void {
    this.resetState();
  }

  /** One step of the loop: x_t -> the next sample (timesteps in the order of `timesteps`). */
  step(modelOutput: Tensor, timestep: number, sample: Tensor): { prevSample: Tensor } {
    const n = this.requireTimesteps();
    const prevSample = this.counter < this.prkTimesteps.length && !this.config.skipPrkSteps
      ? this.stepPrk(modelOutput, timestep, sample, n)
      : this.stepPlms(modelOutput, timestep, sample, n);
    this.counter += 1;
    return { prevSample };
  }

  private remember(t: Tensor): Tensor {
    return t.detach().keep();
  }

  /** Runge-Kutta: four evaluations per step, combined with weights 1/6, 1/3, 1/3, 1/6. */
  private stepPrk(modelOutput: Tensor, timestep: number, sample: Tensor, n: number): Tensor {
    const T = this.config.numTrainTimesteps;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(T / n) / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    return torch.scope(() => {
      let eps = modelOutput;
      const phase = this.counter % 4;
      const accumulate = (w: number): void => {
        const next = this.curModelOutput ? this.curModelOutput.add(modelOutput.mul(w)) : modelOutput.mul(w);
        this.curModelOutput?.dispose();
        this.curModelOutput = next.keep();
      };
      if (phase === 0) {
        accumulate(1 / 6);
        this.ets.push(this.remember(modelOutput));
        this.curSample?.dispose();
        this.curSample = this.remember(sample);
      } else if (phase === 1 || phase === 2) {
        accumulate(1 / 3);
      } else {
        eps = this.curModelOutput!.add(modelOutput.mul(1 / 6));
        this.curModelOutput!.dispose();
        this.curModelOutput = null;
      }
      return this.prevSample(this.curSample ?? sample, t, prevTimestep, eps);
    });
  }

  /** Linear multistep over the stored eps (Adams-Bashforth of order 1 to 4). */
  private stepPlms(modelOutput: Tensor, timestepIn: number, sampleIn: Tensor, n: number): Tensor {
    if (!this.config.skipPrkSteps && this.ets.length < 3) {
      throw new Error('PndmScheduler: PLMS needs the 3 Runge-Kutta warm-up steps first (or skipPrkSteps: true)');
    }
    const ratio = Math.floor(this.config.numTrainTimesteps / n);
    let timestep = timestepIn;
    let prevTimestep = timestep - ratio;
    if (this.counter !== 1) {
      while (this.ets.length > 3) this.ets.shift()!.dispose();
      this.ets.push(this.remember(modelOutput));
    } else {
      // The repeated timestep: redo the first step from its sample with the averaged eps.
      prevTimestep = timestep;
      timestep = timestep + ratio;
    }
    const e = this.ets;
    const k = e.length;
    let used: Tensor | null = null;
    const out = torch.scope(() => {
      let eps: Tensor;
      let sample = sampleIn;
      if (k === 1 && this.counter === 0) {
        eps = modelOutput;
        this.curSample?.dispose();
        this.curSample = this.remember(sampleIn);
      } else if (k === 1 && this.counter === 1) {
        eps = modelOutput.add(e[k - 1]).div(2);
        if (!this.curSample) throw new Error('PndmScheduler: the repeated step has no stored sample (steps out of order?)');
        sample = this.curSample;
        used = this.curSample;
        this.curSample = null;
      } else if (k === 2) {
        eps = e[k - 1].mul(3).sub(e[k - 2]).div(2);
      } else if (k === 3) {
        eps = e[k - 1].mul(23).sub(e[k - 2].mul(16)).add(e[k - 3].mul(5)).div(12);
      } else {
        eps = e[k - 1].mul(55).sub(e[k - 2].mul(59)).add(e[k - 3].mul(37)).sub(e[k - 4].mul(9)).mul(1 / 24);
      }
      return this.prevSample(sample, timestep, prevTimestep, eps);
    });
    (used as Tensor | null)?.dispose();
    return out;
  }

  /** PNDM's transfer x_t -> x_prev given eps (Liu et al. eq. 9), float32 coefficients. */
  private prevSample(sample: Tensor, timestep: number, prevTimestep: number, modelOutput: Tensor): Tensor {
    const a = this.alphaProd(timestep);
    const aPrev = prevTimestep >= 0 ? this.alphaProd(prevTimestep) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bPrev = f32(1 - aPrev);
    return torch.scope(() => {
      const eps = this.config.predictionType === 'v_prediction'
        ? modelOutput.mul(sqrt32(a)).add(sample.mul(sqrt32(b)))
        : modelOutput;
      const sampleCoeff = sqrt32(f32(aPrev / a));
      const denom = f32(f32(a * sqrt32(bPrev)) + sqrt32(f32(f32(a * b) * aPrev)));
      return sample.mul(sampleCoeff).sub(eps.mul(f32(aPrev - a)).div(denom));
    });
  }
}
