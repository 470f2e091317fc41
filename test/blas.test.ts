// The BLAS behind libtorch's float matmuls: this machine must have an optimised, multithreaded
// one (CI fails on the reference BLAS, which made everything ~15x slower on a fresh machine),
// and the detector must name the reference BLAS when it is the one loaded (forced in a child
// process through the loader's search path; .ci/run installs Debian's reference BLAS beside
// OpenBLAS for this, and the alternatives system keeps OpenBLAS as libblas.so.3).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';

const MAIN = path.join(__dirname, '..', 'src', 'cli', 'main.js');
const REFERENCE_DIR = '/usr/lib/x86_64-linux-gnu/blas';

test('an optimised multithreaded BLAS serves sgemm_ (install libopenblas0-openmp otherwise)', () => {
  const info = torch.blasInfo();
  assert.ok(info.library, 'a BLAS library defines sgemm_');
  assert.ok(fs.existsSync(info.library), `${info.library} exists`);
  assert.equal(torch.slowBlasReason(info, 2), null, `slow BLAS: ${torch.describeBlas(info)}`);
  assert.notEqual(info.vendor, 'reference');
});

test('the probe leaves the global RNG stream alone', () => {
  torch.manualSeed(3);
  const a = torch.randn([4]).data();
  torch.manualSeed(3);
  torch.matmulGflops({ n: 64, repeats: 1 });
  assert.deepEqual(torch.randn([4]).data(), a);
});

test('slowBlasReason names each slow case and accepts the fast ones', () => {
  const base: torch.BlasInfo = { library: '/x/libblas.so.3', vendor: 'openblas', config: '', parallel: 'pthreads', threads: 2 };
  assert.equal(torch.slowBlasReason(base, 2), null);
  assert.match(torch.slowBlasReason({ ...base, vendor: 'reference' }, 2) ?? '', /reference BLAS/);
  assert.match(torch.slowBlasReason({ ...base, vendor: 'unknown' }, 2) ?? '', /unrecognised/);
  assert.match(torch.slowBlasReason({ ...base, parallel: 'sequential' }, 2) ?? '', /single-threaded/);
  assert.equal(torch.slowBlasReason({ ...base, parallel: 'sequential' }, 1), null, 'one core needs no threads');
});

test('with the reference BLAS loaded, info names it and commands warn once naming the package', { skip: !fs.existsSync(path.join(REFERENCE_DIR, 'libblas.so.3')) && 'no reference BLAS installed' }, () => {
  const env = { ...process.env, LD_LIBRARY_PATH: REFERENCE_DIR };
  const r = spawnSync(process.execPath, [MAIN, 'info'], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /BLAS \(sgemm_\): reference \(sequential, 1 thread\) \/usr\/lib\/x86_64-linux-gnu\/blas\/libblas\.so/);
  // The same 512³ matmul here, on the optimised BLAS, in the same conditions (a relative check, so a busy machine
  // slows both): the reference BLAS measured 3-6 GFLOP/s on 2 cores, OpenBLAS 150-190.
  const reference = Number(/float32 ([\d.]+) GFLOP\/s/.exec(r.stdout)![1]);
  torch.setNumThreads(os.availableParallelism());
  const ours = torch.matmulGflops({ n: 512 });
  assert.ok(ours > 3 * reference, `float32 matmul: ${ours.toFixed(1)} GFLOP/s here against ${reference.toFixed(1)} on the reference BLAS`);
  const warnings = r.stderr.split('\n').filter((l) => l.includes('warning'));
  assert.equal(warnings.length, 1, r.stderr);
  assert.match(warnings[0], /reference BLAS.*apt-get install libopenblas0-openmp/);
});

test('info names the optimised BLAS and prints both matmul rates, without a warning', () => {
  const r = spawnSync(process.execPath, [MAIN, 'info'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`BLAS \\(sgemm_\\): ${torch.blasInfo().vendor} .*${torch.blasInfo().library.replace(/[.]/g, '\\.')}`));
  assert.match(r.stdout, /float32 [\d.]+ GFLOP\/s, bfloat16 [\d.]+ GFLOP\/s/);
  assert.match(r.stdout, /bf16 instructions: /);
  assert.doesNotMatch(r.stderr, /warning/);
});
