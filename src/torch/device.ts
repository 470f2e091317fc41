// Devices, threads, math modes and mixed precision.
import { DType, dtypeCode, dtypeName } from './dtype';
import { native } from './native';

export const cuda = {
  isAvailable: (): boolean => native.cudaIsAvailable(),
  deviceCount: (): number => native.cudaDeviceCount(),
  synchronize: (index?: number): void => native.cudaSynchronize(index),
  /** Bytes allocated/reserved by the caching allocator, or null without a CUDA build. */
  memoryStats: (index = 0) => native.cudaMemoryStats(index),
  emptyCache: (): void => native.cudaEmptyCache(),
};

export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/**
 * Threads of the BLAS's own pool (OpenBLAS or BLIS, where Debian's libtorch runs matmuls), which
 * setNumThreads does not control. Returns false when the BLAS has no such setting.
 */
export function setBlasThreads(n: number): boolean {
  return native.setBlasThreads(n);
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

/** 'high' lets CUDA float32 matmuls use TF32, as torch.set_float32_matmul_precision. */
export function setFloat32MatmulPrecision(p: 'highest' | 'high' | 'medium'): void {
  native.setMatmulPrecision(p);
}

export function setCudnn(o: { benchmark: boolean; allowTf32: boolean }): void {
  native.setCudnnFlags(o.benchmark, o.allowTf32);
}

export function buildInfo(): { torchVersion: string; cudaBuild: boolean; parallelInfo: string } {
  return native.buildInfo();
}

/**
 * Runs fn under autocast (torch.autocast): matmuls and convolutions run in dtype (bf16 by default)
 * while reductions stay in float32. fn must be synchronous.
 */
export function autocast<T>(fn: () => T, o: { deviceType?: 'cuda' | 'cpu'; dtype?: DType; enabled?: boolean } = {}): T {
  const device = o.deviceType ?? 'cuda';
  const dtype = dtypeCode(o.dtype ?? 'bfloat16');
  const enabled = o.enabled ?? true;
  const [wasEnabled, previousDtype] = native.setAutocast(device, enabled, dtype);
  native.autocastEnter();
  try {
    return fn();
  } finally {
    native.autocastExit();
    native.setAutocast(device, wasEnabled, previousDtype);
  }
}

/** The autocast mode now in force for a device type, to re-enter it later (as checkpointed recomputation must). */
export function autocastState(deviceType: 'cuda' | 'cpu'): { enabled: boolean; dtype: DType } {
  // The addon reports the mode only when setting it: set any value, then put the old one back.
  const [enabled, code] = native.setAutocast(deviceType, false, dtypeCode('bfloat16'));
  native.setAutocast(deviceType, enabled, code);
  return { enabled, dtype: dtypeName(code) };
}
