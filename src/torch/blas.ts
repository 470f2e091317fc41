// Which BLAS serves libtorch's CPU matmuls, and how fast it is. Debian's libtorch calls
// libblas.so.3, which the alternatives system may point at netlib's reference BLAS: one thread,
// no blocking, ~15x slower than OpenBLAS. Commands warn about it; `difftune info` names it.
import { DType } from './dtype';
import { native } from './native';
import { randn } from './creation';
import { Generator } from './random';
import { matmul } from './functions';
import { scope } from './scope';

export type BlasVendor = 'openblas' | 'blis' | 'mkl' | 'reference' | 'unknown';

export interface BlasInfo {
  /** The file the dynamic linker resolved `sgemm_` to, symlinks resolved ('' if no BLAS is loaded). */
  library: string;
  vendor: BlasVendor;
  /** The library's own build description (OpenBLAS's config string, BLIS's version). */
  config: string;
  parallel: 'sequential' | 'pthreads' | 'openmp' | 'unknown';
  /** Its thread pool's size; -1 when the library does not say. */
  threads: number;
}

export function blasInfo(): BlasInfo {
  const i = native.blasInfo();
  return { library: i.library, vendor: i.vendor as BlasVendor, config: i.config, parallel: i.parallel as BlasInfo['parallel'], threads: i.threads };
}

/** A one-line description for logs and bench output: vendor, threading and file. */
export function describeBlas(i: BlasInfo = blasInfo()): string {
  const threads = i.threads > 0 ? `, ${i.threads} thread${i.threads === 1 ? '' : 's'}` : '';
  return `${i.vendor} (${i.parallel}${threads}) ${i.library || 'no sgemm_ loaded'}`;
}

/** The Debian package that replaces a slow BLAS. */
export const FAST_BLAS_PACKAGE = 'libopenblas0-openmp';

/**
 * Why this BLAS makes training slow, or null when it is an optimised, multithreaded one.
 * `cores` matters only for the threading check (one core needs no threads).
 */
export function slowBlasReason(i: BlasInfo, cores: number): string | null {
  if (i.vendor === 'reference') return `matmuls run on the reference BLAS (${i.library}), about 15x slower than an optimised one`;
  if (i.vendor === 'unknown') return `matmuls run on an unrecognised BLAS (${i.library || 'none found'}), possibly the slow reference one`;
  if (cores > 1 && i.parallel === 'sequential') return `matmuls run on a single-threaded ${i.vendor} build (${i.library})`;
  return null;
}

/**
 * Measured matrix-multiply rate in GFLOP/s: n x n times n x n in `dtype`, best of the repeats
 * after a 50 ms warm-up (with the current thread settings). Short: about 0.1 s for n = 512.
 */
export function matmulGflops(o: { n?: number; dtype?: DType; repeats?: number } = {}): number {
  const n = o.n ?? 512;
  const repeats = o.repeats ?? 5;
  return scope(() => {
    // Its own generator: probing must not move the global RNG stream that training draws from.
    const g = new Generator('cpu', 0);
    const a = randn([n, n], { generator: g }).to({ dtype: o.dtype ?? 'float32' });
    const b = randn([n, n], { generator: g }).to({ dtype: o.dtype ?? 'float32' });
    // Warm up for 50 ms: the first calls start the thread pools and pack buffers.
    const warm = process.hrtime.bigint();
    do matmul(a, b).dispose(); while (Number(process.hrtime.bigint() - warm) < 5e7);
    let best = Infinity;
    for (let r = 0; r < repeats; r++) {
      const t0 = process.hrtime.bigint();
      matmul(a, b).dispose();
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    return (2 * n ** 3) / best / 1e9;
  });
}
