export { Optimizer } from './optimizer';
export type { OptimizerState, ParamGroup } from './optimizer';
export { Adam, AdamW } from './adamw';
export type { AdamOptions } from './adamw';
export { SGD } from './sgd';
export type { SGDOptions } from './sgd';
export { clipGradNorm_ } from './clip';
