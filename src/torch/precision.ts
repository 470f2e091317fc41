// Training and sampling precision: float32, or bf16 autocast (float32 weights, bf16 matmuls and
// convolutions), on CUDA and on CPUs. 'auto' picks bf16 on a CPU only where a short measurement
// shows bf16 matmuls clearly faster: CPUs without bf16 instructions emulate them (slower than
// float32), and a training step also runs elementwise work that bf16 speeds up less than matmuls.
import { autocast } from './device';
import { matmulGflops } from './blas';
import { Tensor } from './tensor';

export type Precision = 'fp32' | 'bf16';
export type PrecisionSetting = Precision | 'auto';
export const PRECISION_SETTINGS: readonly PrecisionSetting[] = ['fp32', 'bf16', 'auto'];

/** Measured matmul rates (GFLOP/s) that 'auto' decides by. */
export interface PrecisionProbe { fp32: number; bf16: number }

/** bf16 matmuls must run at least this many times the float32 rate for 'auto' to choose bf16 on a CPU. */
export const AUTO_BF16_MIN_SPEEDUP = 1.5;

/** 512³ matmuls in both dtypes with the current threads (about 0.2 s). */
export function measurePrecisionProbe(): PrecisionProbe {
  return { fp32: matmulGflops({ n: 512 }), bf16: matmulGflops({ n: 512, dtype: 'bfloat16' }) };
}

/**
 * The precision a setting means on a device, and why. 'auto' is bf16 on CUDA; on a CPU it runs
 * `probe` (the measurement, replaceable in tests) and takes bf16 only at >= AUTO_BF16_MIN_SPEEDUP.
 */
export function resolvePrecision(setting: PrecisionSetting, device: string, probe: () => PrecisionProbe = measurePrecisionProbe):
  { precision: Precision; reason: string } {
  if (setting !== 'auto') return { precision: setting, reason: 'as configured' };
  if (device.startsWith('cuda')) return { precision: 'bf16', reason: 'auto on CUDA' };
  const p = probe();
  const speedup = p.bf16 / p.fp32;
  const measured = `bf16 matmuls ${p.bf16.toFixed(0)} vs float32 ${p.fp32.toFixed(0)} GFLOP/s (${speedup.toFixed(2)}x)`;
  return speedup >= AUTO_BF16_MIN_SPEEDUP
    ? { precision: 'bf16', reason: `auto: ${measured}` }
    : { precision: 'fp32', reason: `auto: ${measured}, below ${AUTO_BF16_MIN_SPEEDUP}x` };
}

/** Runs fn in a precision on a device: bf16 is autocast to bfloat16, fp32 runs fn as it is. */
export function inPrecision<T>(precision: Precision, device: string, fn: () => T): T {
  if (precision === 'fp32') return fn();
  return autocast(fn, { deviceType: device.startsWith('cuda') ? 'cuda' : 'cpu', dtype: 'bfloat16' });
}

/**
 * A model function for a sampler, run in a precision: under bf16 autocast with its output back in
 * float32 (the sampler's own math stays float32); fp32 gives fn itself.
 */
export function modelInPrecision<A extends unknown[]>(precision: Precision, device: string, fn: (...args: A) => Tensor): (...args: A) => Tensor {
  if (precision === 'fp32') return fn;
  return (...args: A) => inPrecision(precision, device, () => fn(...args)).float();
}
