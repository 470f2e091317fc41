// Default CPU threading for commands. libtorch's OpenMP pool and OpenBLAS's pool are separate;
// both at full size oversubscribe the cores (measured on 2 cores: 2+2 threads run a DiT step at
// half the speed of 1+2). Explicit OMP_NUM_THREADS / OPENBLAS_NUM_THREADS win.
import * as os from 'os';
import * as torch from '../torch';

export function configureThreads(): void {
  const cores = os.availableParallelism();
  if (!process.env.OMP_NUM_THREADS) torch.setNumThreads(Math.max(1, Math.floor(cores / 2)));
  if (!process.env.OPENBLAS_NUM_THREADS) torch.setBlasThreads(cores);
}
