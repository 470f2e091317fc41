// Runs the built `difftune` command as a user does (one OpenMP thread, so tests stay light).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const MAIN = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');

/** `difftune ...args`; with ok (default) the exit status must be 0, and the output is in the message when it is not. */
export function difftune(args: string[], o: { ok?: boolean; timeoutMs?: number } = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: o.timeoutMs });
  assert.equal(r.error, undefined, `difftune ${args.join(' ')}: ${r.error?.message}`);
  if (o.ok ?? true) assert.equal(r.status, 0, `difftune ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}
