// Output places are checked before long work starts, so a sampling job or a run does not fail at
// its end because its --out cannot be written.
import * as fs from 'fs';
import * as path from 'path';

/**
 * mkdir -p one level at a time: Node 20's recursive mkdirSync spins forever on a path under
 * /proc (it retries the parent that the kernel refuses to create); this fails at once instead.
 */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let p = path.resolve(dir); !fs.existsSync(p); p = path.dirname(p)) {
    missing.unshift(p);
    if (path.dirname(p) === p) break;
  }
  for (const m of missing) fs.mkdirSync(m);
}

/** Makes `dir` and proves a file can be created there; the error names the flag. */
export function checkWritableDir(flag: string, dir: string): void {
  try {
    makeDirs(dir);
    const probe = path.join(dir, `.difftune-write-test-${process.pid}`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`--${flag} ${dir}: cannot write there (${err.code ?? err.message}${err.path && err.path !== dir ? ` at ${err.path}` : ''})`);
  }
}
