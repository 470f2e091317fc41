// create_diffusion from DiT's diffusion/__init__.py: the diffusion DiT trains and samples with.
import { spaceTimesteps } from './respace';
import { getNamedBetaSchedule, NamedBetaSchedule } from './schedule';
import { SpacedDiffusion } from './spaced-diffusion';
import { LossType, ModelVarType } from './types';

export interface CreateDiffusionOptions {
  /**
   * Which steps to keep: '' or undefined for all diffusionSteps, '250' / '25' / '10,15,20'
   * (sections) / 'ddim50' (integer stride), or explicit section counts.
   */
  timestepRespacing?: string | readonly number[] | null;
  /** Default 'linear'. */
  noiseSchedule?: NamedBetaSchedule;
  /** Train on the (rescaled) variational bound alone (default false). */
  useKl?: boolean;
  /** With a fixed variance: the posterior variance instead of beta (default false). */
  sigmaSmall?: boolean;
  /** The model predicts x_0 instead of epsilon (default false). */
  predictXstart?: boolean;
  /** The model outputs a variance too (LEARNED_RANGE; default true, as DiT). */
  learnSigma?: boolean;
  /** Scale the vb term by T/1000 (default false). */
  rescaleLearnedSigmas?: boolean;
  /** Length of the base process (default 1000). */
  diffusionSteps?: number;
}

/** DiT's create_diffusion: always a SpacedDiffusion, over all steps when no respacing is given. */
export function createDiffusion(o: CreateDiffusionOptions = {}): SpacedDiffusion {
  const steps = o.diffusionSteps ?? 1000;
  const betas = getNamedBetaSchedule(o.noiseSchedule ?? 'linear', steps);
  const lossType: LossType = o.useKl ? 'rescaled_kl' : o.rescaleLearnedSigmas ? 'rescaled_mse' : 'mse';
  const respacing = o.timestepRespacing === undefined || o.timestepRespacing === null || o.timestepRespacing === ''
    ? [steps] : o.timestepRespacing;
  const learnSigma = o.learnSigma ?? true;
  const modelVarType: ModelVarType = learnSigma ? 'learned_range' : o.sigmaSmall ? 'fixed_small' : 'fixed_large';
  return new SpacedDiffusion(spaceTimesteps(steps, respacing), {
    betas,
    modelMeanType: o.predictXstart ? 'start_x' : 'epsilon',
    modelVarType,
    lossType,
  });
}
