export { Module, StateDictError } from './module';
export type { LoadReport, StateDict } from './module';
export * from './layers';
export * as init from './init';
