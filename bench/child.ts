// Benchmark child processes: an environment with explicit thread counts for libtorch's OpenMP
// pool and for OpenBLAS's own pool (nothing inherited that would change threading or malloc),
// running a child that reports one JSON line, and naming the BLAS each side ran on.
import { spawnSync } from 'node:child_process';

export function childEnv(threads: number, blasThreads: number, glibcTunables?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS']) env[k] = String(threads);
  for (const k of ['OPENBLAS_NUM_THREADS', 'GOTO_NUM_THREADS']) env[k] = String(blasThreads);
  for (const k of ['OMP_PROC_BIND', 'GOMP_CPU_AFFINITY', 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'GLIBC_TUNABLES', 'LD_PRELOAD']) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith('MALLOC_')) delete env[k];
  if (glibcTunables) env.GLIBC_TUNABLES = glibcTunables;
  return env;
}

/**
 * Runs a benchmark child that prints its result as a JSON line on stdout; returns that object,
 * or the reason it failed (the child's last error line, a timeout, no result line).
 */
export function runJsonChild(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutS: number):
  { ok: true; json: Record<string, unknown> } | { ok: false; error: string } {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 16 << 20 });
  if (r.error) return { ok: false, error: `${cmd}: ${r.error.message}` };
  if (r.status !== 0) {
    const lines = `${r.stderr ?? ''}`.trim().split('\n');
    const message = lines.filter((l) => /Error\b|error:/.test(l)).pop() ?? lines.pop() ?? '';
    return { ok: false, error: `exit ${r.status ?? r.signal}: ${message.trim()}` };
  }
  const line = `${r.stdout}`.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) return { ok: false, error: 'no result line' };
  return { ok: true, json: JSON.parse(line) as Record<string, unknown> };
}

const blasBySide = new Map<string, string>();

/**
 * Prints, the first time each side reports it, the BLAS that side's child ran on (the `blas` field
 * of its JSON line: bench/blas_info.py on the PyTorch side, describeBlas on ours), and says so
 * when the two sides differ, since a ratio then compares libraries rather than engines.
 */
export function noteBlas(side: string, json: Record<string, unknown>): void {
  const blas = typeof json.blas === 'string' ? json.blas : 'not reported';
  if (blasBySide.has(side)) return;
  blasBySide.set(side, blas);
  console.log(`  blas ${side.padEnd(5)} ${blas}`);
  const libraries = new Set([...blasBySide.values()].map((b) => b.split(' ').pop()));
  if (blasBySide.size > 1 && libraries.size > 1) console.log('  warning: the sides run on different BLAS libraries; their ratio compares those too');
}
