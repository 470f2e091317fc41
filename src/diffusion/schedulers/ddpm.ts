// diffusers' DDPMScheduler (Ho et al., "Denoising Diffusion Probabilistic Models"): ancestral
// sampling from the posterior q(x_{t-1} | x_t, x0) with x0 predicted by the model.
import * as torch from '../../torch';
import { Generator, Tensor } from '../../torch';
import { f32, randnLikeFrom, Scheduler, sqrt32 } from './base';
import { SchedulerConfig, schedulerConfig, schedulerConfigFromJson } from './config';

export interface DdpmStepOptions {
  /** Draws the step's noise (randn, as diffusers' randn_tensor with one generator). */
  generator?: Generator;
  /** The noise itself (instead of drawing it). */
  varianceNoise?: Tensor;
}

export interface DdpmStepOutput {
  prevSample: Tensor;
  predOriginalSample: Tensor;
}

export class DdpmScheduler extends Scheduler {
  constructor(config: Partial<SchedulerConfig> = {}) {
    super(schedulerConfig('ddpm', config));
  }

  /** DDPMScheduler.from_config(json). */
  static fromConfig(json: Readonly<Record<string, unknown>>, where?: string): DdpmScheduler {
    return new DdpmScheduler(schedulerConfigFromJson('ddpm', json, where));
  }

  /** The next timestep of the loop after t (-1 after the last); t - 1 before setTimesteps. */
  previousTimestep(t: number): number {
    if (this.numInferenceSteps === null) return t - 1;
    const index = this.timesteps.indexOf(t);
    if (index < 0) throw new RangeError(`DdpmScheduler: timestep ${t} is not one of the ${this.timesteps.length} set timesteps`);
    return index === this.timesteps.length - 1 ? -1 : this.timesteps[index + 1];
  }

  /** The variance of p(x_{prev} | x_t) by variance type (diffusers' _get_variance, float32). */
  variance(t: number): number {
    const prev = this.previousTimestep(t);
    const a = this.alphaProd(t);
    const aPrev = prev >= 0 ? this.alphaProd(prev) : 1.0;
    const currentBeta = f32(1 - f32(a / aPrev));
    const posterior = Math.max(f32(f32(f32(1 - aPrev) / f32(1 - a)) * currentBeta), f32(1e-20));
    switch (this.config.varianceType) {
      case 'fixed_small': return posterior;
      case 'fixed_small_log': return f32(Math.exp(f32(0.5 * f32(Math.log(posterior)))));
      case 'fixed_large': return currentBeta;
    }
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, o: DdpmStepOptions = {}): DdpmStepOutput {
    const t = timestep;
    const prev = this.previousTimestep(t);
    const a = this.alphaProd(t);
    const aPrev = prev >= 0 ? this.alphaProd(prev) : 1.0;
    const betaProd = f32(1 - a);
    const betaProdPrev = f32(1 - aPrev);
    const currentAlpha = f32(a / aPrev);
    const currentBeta = f32(1 - currentAlpha);
    return torch.scope(() => {
      const x0 = this.clipX0(this.predictions(modelOutput, sample, a).x0);
      const x0Coeff = f32(f32(sqrt32(aPrev) * currentBeta) / betaProd);
      const sampleCoeff = f32(f32(sqrt32(currentAlpha) * betaProdPrev) / betaProd);
      let prevSample = x0.mul(x0Coeff).add(sample.mul(sampleCoeff));
      if (t > 0) {
        const noise = o.varianceNoise ?? randnLikeFrom(modelOutput, o.generator);
        const v = this.variance(t);
        // fixed_small_log's value is already a standard deviation; the others are variances.
        const scale = this.config.varianceType === 'fixed_small_log' ? v : sqrt32(v);
        prevSample = prevSample.add(noise.mul(scale));
      }
      return { prevSample, predOriginalSample: x0 === modelOutput ? x0.clone() : x0 };
    });
  }
}
