// The environment of a benchmark child process: explicit thread counts for libtorch's OpenMP
// pool and for OpenBLAS's own pool, and nothing inherited that would change threading or malloc.

export function childEnv(threads: number, blasThreads: number, glibcTunables?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS']) env[k] = String(threads);
  for (const k of ['OPENBLAS_NUM_THREADS', 'GOTO_NUM_THREADS']) env[k] = String(blasThreads);
  for (const k of ['OMP_PROC_BIND', 'GOMP_CPU_AFFINITY', 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'GLIBC_TUNABLES', 'LD_PRELOAD']) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith('MALLOC_')) delete env[k];
  if (glibcTunables) env.GLIBC_TUNABLES = glibcTunables;
  return env;
}
