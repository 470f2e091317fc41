// diffusers' DDIMScheduler (Song et al., "Denoising Diffusion Implicit Models"): the deterministic
// (eta = 0) or stochastic update from x_t to x_{t - T/n} through the predicted x0.
import * as torch from '../../torch';
import { Generator, Tensor } from '../../torch';
import { f32, randnLikeFrom, Scheduler, sqrt32 } from './base';
import { SchedulerConfig, schedulerConfig, schedulerConfigFromJson } from './config';

export interface DdimStepOptions {
  /** 0: DDIM; 1: the DDPM posterior variance. */
  eta?: number;
  /** Recompute eps from the clipped x0 (diffusers' use_clipped_model_output). */
  useClippedModelOutput?: boolean;
  /** The noise of an eta > 0 step; drawn from `generator` (randn) when absent. */
  varianceNoise?: Tensor;
  generator?: Generator;
}

export interface DdimStepOutput {
  prevSample: Tensor;
  predOriginalSample: Tensor;
}

export class DdimScheduler extends Scheduler {
  /** The alpha-bar used past the last step (prev timestep < 0). */
  readonly finalAlphaCumprod: number;

  constructor(config: Partial<SchedulerConfig> = {}) {
    super(schedulerConfig('ddim', config));
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1.0 : this.alphasCumprod[0];
  }

  /** DDIMScheduler.from_config(json). */
  static fromConfig(json: Readonly<Record<string, unknown>>, where?: string): DdimScheduler {
    return new DdimScheduler(schedulerConfigFromJson('ddim', json, where));
  }

  private alphaProdPrev(prev: number): number {
    return prev >= 0 ? this.alphaProd(prev) : this.finalAlphaCumprod;
  }

  /** sigma_t^2 of DDIM's eq. 16 at eta = 1. */
  variance(timestep: number, prevTimestep: number): number {
    const a = this.alphaProd(timestep);
    const aPrev = this.alphaProdPrev(prevTimestep);
    return f32(f32(f32(1 - aPrev) / f32(1 - a)) * f32(1 - f32(a / aPrev)));
  }

  /** x_t -> x_{t - T/n}. */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, o: DdimStepOptions = {}): DdimStepOutput {
    const n = this.requireTimesteps();
    const eta = o.eta ?? 0;
    const prev = timestep - Math.floor(this.config.numTrainTimesteps / n);
    const a = this.alphaProd(timestep);
    const aPrev = this.alphaProdPrev(prev);
    return torch.scope(() => {
      const predicted = this.predictions(modelOutput, sample, a);
      const x0 = this.clipX0(predicted.x0);
      const std = f32(f32(eta) * sqrt32(this.variance(timestep, prev)));
      const eps = o.useClippedModelOutput
        ? sample.sub(x0.mul(sqrt32(a))).div(sqrt32(f32(1 - a)))
        : predicted.eps;
      const direction = eps.mul(sqrt32(f32(f32(1 - aPrev) - f32(std * std))));
      let prevSample = x0.mul(sqrt32(aPrev)).add(direction);
      if (eta > 0) {
        const noise = o.varianceNoise ?? randnLikeFrom(modelOutput, o.generator);
        prevSample = prevSample.add(noise.mul(std));
      }
      return { prevSample, predOriginalSample: x0 === modelOutput ? x0.clone() : x0 };
    });
  }
}
