// Gaussian diffusion for DiT: schedules, respacing, the diffusion process with its losses and
// samplers, DiT's create_diffusion, timestep samplers and classifier-free guidance helpers.
export * from './types';
export * from './schedule';
export * from './respace';
export * from './losses';
export { CoefficientTables } from './coefficients';
export * from './gaussian-diffusion';
export { SpacedDiffusion } from './spaced-diffusion';
export * from './create';
export * from './timestep-sampler';
export * from './cfg';
