// diffusers' schedulers for Stable Diffusion: DDPM, DDIM and PNDM (PLMS), built from a
// scheduler_config.json the way pipelines do (Cls.from_config(pipe.scheduler.config)).
export * from './config';
export { Scheduler, noiseTables, spacedTimesteps } from './base';
export { DdpmScheduler } from './ddpm';
export type { DdpmStepOptions, DdpmStepOutput } from './ddpm';
export { DdimScheduler } from './ddim';
export type { DdimStepOptions, DdimStepOutput } from './ddim';
export { PndmScheduler } from './pndm';

import { SchedulerKind } from './config';
import { DdimScheduler } from './ddim';
import { DdpmScheduler } from './ddpm';
import { PndmScheduler } from './pndm';

/** A scheduler of `kind` from any scheduler config object (its own fields taken, the rest ignored). */
export function schedulerFromConfig(kind: SchedulerKind, json: Readonly<Record<string, unknown>>, where?: string): DdpmScheduler | DdimScheduler | PndmScheduler {
  switch (kind) {
    case 'ddpm': return DdpmScheduler.fromConfig(json, where);
    case 'ddim': return DdimScheduler.fromConfig(json, where);
    case 'pndm': return PndmScheduler.fromConfig(json, where);
    default: throw new Error(`unknown scheduler '${String(kind)}' (ddpm, ddim, pndm)`);
  }
}
