// `npm run bench:sampling`: sampling throughput (images/s) of a small pixel-space DiT with the
// DDPM sampler (respaced to 250 steps) and classifier-free guidance (scale 4), on difftune's
// engine (ts_sample.ts: createDiffusion + pSampleLoop + DiT.forwardWithCfg, as `difftune sample`)
// and in Python PyTorch (dit_sample.py: the official DiT p_sample loop over the DiT mirror of
// bench/engine/dit_step.py). Each side runs in a child process with an explicit thread
// environment, at each thread setting; each child warms up with one short loop, then times one
// full loop. Prints images/s per side and setting, the best per side and, last,
// `ratio sample <ts images/s / torch images/s>` of the best settings.
//
//   node dist/bench/sampling/run.js [--steps N] [--batch N] [--cfg S] [--loops L] [--warmup-steps N]
//     [--settings 1+1,1+2,2+1] [--precision fp32,bf16] [--side both|ts|torch] [--repeat R] [--python PATH]
//     [--device cpu|cuda] [--timeout S]
// CPU: float32 and bf16 autocast around the model (`ratio sample-bf16`), both sides alike.
//
// A setting is `<intra-op threads>+<OpenBLAS threads>`. Debian's libtorch runs matmuls in the
// pthread build of OpenBLAS, whose pool is separate from libtorch's OpenMP pool, so the two are set
// independently; 2+2 oversubscribes a 2-CPU host and is left out of the default settings (give it
// with --settings to see). CUDA: one setting (1+1), both sides fp32 with TF32 off; the Python side
// then needs a CUDA build of PyTorch (--python PATH or $PYTHON).
import * as os from 'node:os';
import * as path from 'node:path';
import { childEnv, noteBlas, runJsonChild } from '../child';
import * as torch from '../../src/torch';
import { Args } from '../args';

/** The model: 32x32x3 pixels, patch 4 (64 tokens), hidden 192, depth 6, 6 heads, 10 classes, learned sigma. */
const MODEL = { inputSize: 32, inChannels: 3, patchSize: 4, hiddenSize: 192, depth: 6, numHeads: 6, numClasses: 10 };

interface Setting {
  threads: number;
  blas: number;
}

interface Options {
  steps: number;
  batch: number;
  cfg: number;
  loops: number;
  warmupSteps: number;
  settings: Setting[];
  /** float32, and bf16 autocast around the model (CPU default: both; CUDA: fp32). */
  precisions: ('fp32' | 'bf16')[];
  sides: ('ts' | 'torch')[];
  repeat: number;
  python: string;
  device: 'cpu' | 'cuda';
  timeoutS: number;
}

function usage(msg?: string): never {
  if (msg) console.error(`bench:sampling: ${msg}`);
  console.error('usage: run.js [--steps N] [--batch N] [--cfg S] [--loops L] [--warmup-steps N] [--settings 1+1,1+2,2+1]\n' +
    '  [--precision fp32,bf16] [--side both|ts|torch] [--repeat R] [--python PATH] [--device cpu|cuda] [--timeout S]');
  process.exit(2);
}

function parse(argv: string[]): Options {
  let settings: Setting[] | undefined;
  let precisions: ('fp32' | 'bf16')[] | undefined;
  const o: Options = {
    steps: 250, batch: 8, cfg: 4, loops: 1, warmupSteps: 5, settings: [], precisions: [], sides: ['ts', 'torch'], repeat: 1,
    python: process.env.PYTHON ?? '/usr/bin/python3', device: 'cpu', timeoutS: 600,
  };
  const a = new Args(argv, usage);
  for (let k = a.flag(); k !== undefined; k = a.flag()) {
    switch (k) {
      case '--steps': o.steps = a.int(a.value(), '--steps'); break;
      case '--batch': o.batch = a.int(a.value(), '--batch'); break;
      case '--cfg': {
        const s = a.value();
        o.cfg = Number(s);
        if (!Number.isFinite(o.cfg)) usage(`--cfg must be a number, got '${s}'`);
        break;
      }
      case '--loops': o.loops = a.int(a.value(), '--loops'); break;
      case '--warmup-steps': o.warmupSteps = a.int(a.value(), '--warmup-steps'); break;
      case '--settings': settings = a.value().split(',').map((s) => {
        const m = /^(\d+)\+(\d+)$/.exec(s.trim());
        if (!m) usage(`--settings: '${s}' is not <threads>+<blas threads>, e.g. 1+2`);
        return { threads: a.int(m[1], '--settings threads'), blas: a.int(m[2], '--settings blas threads') };
      }); break;
      case '--precision': precisions = a.value().split(',').map((p) => {
        if (p !== 'fp32' && p !== 'bf16') usage(`--precision: '${p}' is not fp32 or bf16`);
        return p as 'fp32' | 'bf16';
      }); break;
      case '--side': {
        const s = a.choice(['both', 'ts', 'torch'] as const);
        o.sides = s === 'both' ? ['ts', 'torch'] : [s];
        break;
      }
      case '--repeat': o.repeat = a.int(a.value(), '--repeat'); break;
      case '--python': o.python = a.value(); break;
      case '--device': o.device = a.choice(['cpu', 'cuda'] as const); break;
      case '--timeout': o.timeoutS = a.int(a.value(), '--timeout'); break;
      case '-h': case '--help': return usage();
      default: return usage(`unknown argument '${k}'`);
    }
  }
  if (o.warmupSteps > 1000 || o.steps > 1000) usage('--steps and --warmup-steps respace 1000 diffusion steps: at most 1000');
  // On CUDA the host threads hardly matter: one setting. On CPU: 1 or 2 of each, never 2+2 by default.
  o.settings = settings ?? (o.device === 'cuda' ? [{ threads: 1, blas: 1 }]
    : [{ threads: 1, blas: 1 }, { threads: 1, blas: 2 }, { threads: 2, blas: 1 }]);
  o.precisions = precisions ?? (o.device === 'cuda' ? ['fp32'] : ['fp32', 'bf16']);
  return o;
}

interface RunResult {
  ok: boolean;
  imagesPerS: number;
  images: number;
  seconds: number;
  msPerStep?: number;
  cpuSeconds?: number;
  checksum?: number;
  version?: string;
  error?: string;
}

/**
 * The environment of a child (as bench/engine/run.ts gives its children): every thread-count
 * variable set to this run's values so neither the parent's environment nor a previous run leaks
 * in. libtorch's intra-op pool is OpenMP (OMP_NUM_THREADS), which OpenBLAS's OpenMP build shares;
 * its pthreads build sizes a pool of its own from OPENBLAS_NUM_THREADS, else GOTO_NUM_THREADS.
 */
function runChild(side: 'ts' | 'torch', s: Setting, precision: 'fp32' | 'bf16', o: Options): RunResult {
  const m = MODEL;
  const common = [
    '--input-size', m.inputSize, '--in-channels', m.inChannels, '--patch-size', m.patchSize, '--hidden-size', m.hiddenSize,
    '--depth', m.depth, '--num-heads', m.numHeads, '--num-classes', m.numClasses,
    '--batch', o.batch, '--steps', o.steps, '--warmup-steps', o.warmupSteps, '--loops', o.loops, '--cfg', o.cfg,
    '--threads', s.threads, '--device', o.device, '--precision', precision,
  ].map(String);
  const [cmd, args] = side === 'ts'
    ? [process.execPath, [path.join(__dirname, 'ts_sample.js'), ...common, '--blas-threads', String(s.blas)]]
    : [o.python, [path.join(__dirname, '..', '..', '..', 'bench', 'sampling', 'dit_sample.py'), ...common]];
  const child = runJsonChild(cmd, args, childEnv(s.threads, s.blas), o.timeoutS);
  const fail = (error: string): RunResult => ({ ok: false, imagesPerS: 0, images: 0, seconds: 0, error });
  if (!child.ok) return fail(child.error);
  noteBlas(side, child.json);
  const j = child.json;
  if (j.finite === false) return fail(`the samples are not finite (checksum ${String(j.checksum)})`);
  return {
    ok: true, imagesPerS: j.images_per_s as number, images: j.images as number, seconds: j.seconds as number,
    msPerStep: j.ms_per_step as number | undefined, cpuSeconds: j.cpu_seconds as number | undefined,
    checksum: j.checksum as number | undefined, version: j.version as string | undefined,
  };
}

function main(): void {
  const o = parse(process.argv.slice(2));
  const m = MODEL;
  console.log(`bench:sampling  device ${o.device}  host ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})  ` +
    `load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}  python ${o.python}`);
  console.log(`model ${m.inputSize}x${m.inputSize}x${m.inChannels}, patch ${m.patchSize}, hidden ${m.hiddenSize}, depth ${m.depth}, ` +
    `heads ${m.numHeads}, ${m.numClasses} classes, learned sigma; DDPM ${o.steps} steps, cfg ${o.cfg}, ` +
    `batch ${o.batch} (${2 * o.batch} with CFG), ${o.loops} timed loop(s) after a ${o.warmupSteps}-step warm-up`);
  const cpuBf16 = torch.cpuFeatures().bf16;
  if (o.device === 'cpu') console.log(`cpu bf16 instructions: ${cpuBf16.length ? cpuBf16.join(', ') : 'none (bf16 is emulated)'}`);
  for (const precision of o.precisions) {
    const label = precision === 'fp32' ? 'sample' : `sample-${precision}`;
    console.log(`precision ${precision}`);
    const best: Record<'ts' | 'torch', { ips: number; setting: string } | null> = { ts: null, torch: null };
    for (let rep = 0; rep < o.repeat; rep++) {
      for (const s of o.settings) {
        // Alternate which side goes first so slow drifts in machine load hit both alike.
        const order = rep % 2 ? [...o.sides].reverse() : o.sides;
        for (const side of order) {
          const r = runChild(side, s, precision, o);
          const name = side === 'ts' ? 'ts   ' : 'torch';
          const setting = `threads=${s.threads} blas=${s.blas}`;
          if (!r.ok) {
            console.log(`  ${name} ${setting}  failed: ${r.error}`);
            continue;
          }
          const cpu = r.cpuSeconds !== undefined ? `, cpu ${(r.cpuSeconds / r.seconds).toFixed(2)}x wall` : '';
          const step = r.msPerStep !== undefined ? `, ${r.msPerStep.toFixed(1)} ms/step` : '';
          const sum = r.checksum !== undefined ? `, mean |x0| ${r.checksum.toPrecision(6)}` : '';
          console.log(`  ${name} ${setting}  ${r.imagesPerS.toFixed(3)} images/s  (${r.images} images in ${r.seconds.toFixed(2)} s` +
            `${step}${cpu}${sum}${r.version ? `, torch ${r.version}` : ''})`);
          const b = best[side];
          if (!b || r.imagesPerS > b.ips) best[side] = { ips: r.imagesPerS, setting };
        }
      }
    }
    const fmt = (b: { ips: number; setting: string } | null): string => (b ? `${b.ips.toFixed(3)} images/s (${b.setting})` : 'n/a');
    console.log(`best ${label}  ts ${fmt(best.ts)}  torch ${fmt(best.torch)}`);
    console.log(`ratio ${label} ${best.ts && best.torch ? (best.ts.ips / best.torch.ips).toFixed(3) : 'n/a'}`);
  }
}

main();
