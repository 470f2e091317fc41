// Default CPU threading for commands, and the once-per-process warning about a slow BLAS.
// OpenBLAS's OpenMP build (the one .ci/run and the README install) runs its matmuls on
// libtorch's own OpenMP pool: every core goes to that one pool. Its pthreads build keeps a second
// pool that spins beside libtorch's: there both at full size oversubscribe the cores, and 1+2
// threads was the best split on 2 cores. Measured on a DiT training step, 2 cores: the OpenMP
// build with 2 threads ran 1.3-1.4x the pthreads build's best split (README, Install).
// Explicit OMP_NUM_THREADS / OPENBLAS_NUM_THREADS win.
import * as os from 'os';
import * as torch from '../torch';

export function configureThreads(): void {
  const cores = os.availableParallelism();
  const blas = torch.blasInfo();
  const separatePool = blas.parallel === 'pthreads';
  if (!process.env.OMP_NUM_THREADS) torch.setNumThreads(separatePool ? Math.max(1, Math.floor(cores / 2)) : cores);
  if (!process.env.OPENBLAS_NUM_THREADS && separatePool) torch.setBlasThreads(cores);
  warnIfSlowBlas(cores, blas);
}

let warned = false;

/** Every command that trains, samples or evaluates calls this (through configureThreads). */
export function warnIfSlowBlas(cores = os.availableParallelism(), blas = torch.blasInfo()): void {
  if (warned || torch.cuda.isAvailable()) return;
  warned = true;
  const reason = torch.slowBlasReason(blas, cores);
  if (reason) {
    console.warn(`difftune: warning: ${reason}; install ${torch.FAST_BLAS_PACKAGE} ` +
      `(apt-get install ${torch.FAST_BLAS_PACKAGE}) or see 'difftune info'.`);
  }
}
