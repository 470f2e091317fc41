// The public tensor API: `import * as torch from 'difftune/torch'` reads like PyTorch.
export { Tensor, scalarLike } from './tensor';
export type { Device, Shape, Scalar, NestedArray, ToOptions } from './tensor';
export type { DType } from './dtype';
export { isFloating } from './dtype';
export { scope, scopeDepth, liveTensorCount } from './scope';
export * from './creation';
export * from './functions';
export { manualSeed, Generator } from './random';
export { noGrad, enableGrad, isGradEnabled, backward, grad } from './autograd';
export * from './gradcheck';
export { cuda, setNumThreads, setBlasThreads, getNumThreads, setFloat32MatmulPrecision, setCudnn, buildInfo, autocast, autocastState } from './device';
export { resolvePrecision, inPrecision, modelInPrecision, measurePrecisionProbe, AUTO_BF16_MIN_SPEEDUP, PRECISION_SETTINGS } from './precision';
export type { Precision, PrecisionSetting, PrecisionProbe } from './precision';
export { cpuFeatures } from './cpu-features';
export type { CpuFeatures } from './cpu-features';
export { blasInfo, describeBlas, slowBlasReason, matmulGflops, FAST_BLAS_PACKAGE } from './blas';
export type { BlasInfo, BlasVendor } from './blas';
export * as F from './functional';
export * as nn from './nn';
export * as optim from './optim';
export {
  loadSafetensors, saveSafetensors, safetensorsMetadata, loadCheckpoint, saveOptimizerState, loadOptimizerState,
  tensorFromRaw, rawFromTensor, CheckpointError,
} from './serialization';
