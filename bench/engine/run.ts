// `npm run bench:engine`: the same small DiT training step on difftune's engine (ts_step.ts,
// over src/models/dit.ts) and in Python PyTorch (dit_step.py), each in a child process with an
// explicit thread environment, at each thread setting; prints steps/s per side and setting and,
// last for each config, `ratio <config> <ts steps/s / torch steps/s>` of the best settings.
//
//   node dist/bench/engine/run.js [--config tiny|small|dit-s2|dit-b2|all] [--steps N]
//     [--min-seconds S] [--threads 1,2] [--blas-threads 1,2] [--repeat R] [--side both|ts|torch]
//     [--python PATH] [--malloc default|tuned] [--device cpu|cuda] [--precision fp32,tf32,bf16] [--profile]
//
// CPU (default): configs tiny and small, float32 and bf16 autocast (`ratio tiny-bf16`, against
// torch.autocast("cpu") on the PyTorch side); every pair of intra-op threads (1, 2) and OpenBLAS threads
// (1, 2); each run timed for >= 10 s. Debian's libtorch calls the pthread build of OpenBLAS, whose
// thread pool is separate from libtorch's OpenMP pool, so the two counts are set independently
// (both at 2 oversubscribes a 2-CPU host).
// --malloc tuned gives both sides the same glibc settings (no heap trimming, 32 MiB mmap
// threshold, 64 MiB top pad); default leaves glibc's dynamic heuristics, whose page-fault count
// per step varies between processes (see the faults/step column).
// CUDA: configs tiny, small, dit-s2, dit-b2 at fp32 (TF32 off), tf32 and bf16 autocast, one host
// thread; labelled `<config>@cuda-<precision>`. All of it is 24 runs of >= 10 s plus start-up, so
// on a machine with a per-command limit run subsets, e.g.
//   node dist/bench/engine/run.js --device cuda --config dit-s2,dit-b2 --min-seconds 5
//   node dist/bench/engine/run.js --device cuda --config tiny,small --precision fp32,bf16 --min-seconds 5
// The Python side needs a CUDA build of PyTorch (--python PATH or $PYTHON picks the interpreter);
// torch >= 2 uses fused scaled_dot_product_attention on both sides.
import * as os from 'node:os';
import * as path from 'node:path';
import { childEnv, noteBlas, runJsonChild } from '../child';
import { CONFIGS, PRECISIONS, Precision } from './configs';
import { Args } from '../args';
import * as torch from '../../src/torch';

interface Options {
  configs: string[];
  steps: number;
  minSeconds: number;
  threads: number[];
  blasThreads: number[];
  repeat: number;
  malloc: 'default' | 'tuned';
  sides: ('ts' | 'torch')[];
  python: string;
  device: 'cpu' | 'cuda';
  precisions: Precision[];
  profile: boolean;
  timeoutS: number;
}

function usage(msg?: string): never {
  if (msg) console.error(`bench:engine: ${msg}`);
  console.error('usage: run.js [--config NAME|all] [--steps N] [--min-seconds S] [--threads 1,2] [--repeat R]\n' +
    '  [--blas-threads 1,2] [--side both|ts|torch] [--python PATH] [--malloc default|tuned] [--device cpu|cuda]\n' +
    '  [--precision fp32,tf32,bf16] [--profile] [--timeout S]');
  process.exit(2);
}

function parse(argv: string[]): Options {
  let config: string | undefined;
  let threads: number[] | undefined;
  let blasThreads: number[] | undefined;
  let precisions: Precision[] | undefined;
  const o: Options = {
    configs: [], steps: 0, minSeconds: 10, threads: [], blasThreads: [], repeat: 1, sides: ['ts', 'torch'], malloc: 'default',
    python: process.env.PYTHON ?? '/usr/bin/python3', device: 'cpu', precisions: ['fp32'], profile: false, timeoutS: 900,
  };
  const a = new Args(argv, usage);
  for (let k = a.flag(); k !== undefined; k = a.flag()) {
    switch (k) {
      case '--config': config = a.value(); break;
      case '--steps': o.steps = a.int(a.value(), '--steps'); break;
      case '--min-seconds': o.minSeconds = Number(a.value()); break;
      case '--threads': threads = a.value().split(',').map((s) => a.int(s, '--threads')); break;
      case '--blas-threads': blasThreads = a.value().split(',').map((s) => a.int(s, '--blas-threads')); break;
      case '--repeat': o.repeat = a.int(a.value(), '--repeat'); break;
      case '--malloc': o.malloc = a.choice(['default', 'tuned'] as const); break;
      case '--side': {
        const s = a.choice(['both', 'ts', 'torch'] as const);
        o.sides = s === 'both' ? ['ts', 'torch'] : [s];
        break;
      }
      case '--python': o.python = a.value(); break;
      case '--device': o.device = a.choice(['cpu', 'cuda'] as const); break;
      case '--precision': precisions = a.value().split(',').map((p) => {
        if (!PRECISIONS.includes(p as Precision)) usage(`unknown precision '${p}' (fp32, tf32, bf16)`);
        return p as Precision;
      }); break;
      case '--profile': o.profile = true; break;
      case '--timeout': o.timeoutS = a.int(a.value(), '--timeout'); break;
      case '-h': case '--help': return usage();
      default: return usage(`unknown argument '${k}'`);
    }
  }
  const cpuConfigs = Object.keys(CONFIGS).filter((c) => !CONFIGS[c].cudaOnly);
  const all = o.device === 'cuda' ? Object.keys(CONFIGS) : cpuConfigs;
  if (config === undefined || config === 'all') o.configs = all;
  else {
    o.configs = config.split(',');
    for (const c of o.configs) if (!CONFIGS[c]) usage(`unknown config '${c}' (${Object.keys(CONFIGS).join(', ')})`);
  }
  // On CUDA the host thread count hardly matters: one setting. On CPU: 1 and 2 intra-op threads.
  o.threads = threads ?? (o.device === 'cuda' ? [1] : [1, 2]);
  o.blasThreads = blasThreads ?? (o.device === 'cuda' ? [1] : [1, 2]);
  // CPU: float32 and bf16 autocast on both sides (TF32 is a CUDA mode).
  o.precisions = o.device === 'cuda' ? precisions ?? PRECISIONS : precisions ?? ['fp32', 'bf16'];
  if (o.device === 'cpu' && o.precisions.includes('tf32')) usage('--precision tf32 applies to --device cuda only');
  return o;
}

interface RunResult {
  ok: boolean;
  stepsPerS: number;
  steps: number;
  seconds: number;
  cpuSeconds?: number;
  sysSeconds?: number;
  minfltPerStep?: number;
  version?: string;
  profile?: unknown;
  error?: string;
}

/** glibc malloc settings for `--malloc tuned` (given to both sides alike): keep freed memory in the heap. */
const TUNED_MALLOC = 'glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_threshold=33554432:glibc.malloc.top_pad=67108864';

/**
 * The environment of a child: every thread-count variable set to this run's values, so neither
 * the parent's environment nor a previous run leaks in. libtorch's intra-op pool is OpenMP
 * (OMP_NUM_THREADS; set_num_threads sets it too). OpenBLAS's OpenMP build (what .ci/run installs)
 * shares that pool; its pthreads build keeps its own, sized from OPENBLAS_NUM_THREADS, else
 * GOTO_NUM_THREADS, else OMP_NUM_THREADS, else all CPUs. The `blas` lines say which one ran.
 */
function runChild(side: 'ts' | 'torch', config: string, threads: number, blasThreads: number, precision: Precision, o: Options): RunResult {
  const common = ['--config', config, '--threads', String(threads), '--device', o.device, '--precision', precision,
    '--min-seconds', String(o.minSeconds)];
  if (o.steps) common.push('--steps', String(o.steps));
  const [cmd, args] = side === 'ts'
    ? [process.execPath, [path.join(__dirname, 'ts_step.js'), ...common, ...(o.profile ? ['--profile'] : [])]]
    : [o.python, [path.join(__dirname, '..', '..', '..', 'bench', 'engine', 'dit_step.py'), ...common]];
  const child = runJsonChild(cmd, args, childEnv(threads, blasThreads, o.malloc === 'tuned' ? TUNED_MALLOC : undefined), o.timeoutS);
  const fail = (error: string): RunResult => ({ ok: false, stepsPerS: 0, steps: 0, seconds: 0, error });
  if (!child.ok) return fail(child.error);
  noteBlas(side, child.json);
  const j = child.json;
  return {
    ok: true, stepsPerS: j.steps_per_s as number, steps: j.steps as number, seconds: j.seconds as number,
    cpuSeconds: j.cpu_seconds as number | undefined, sysSeconds: j.sys_seconds as number | undefined,
    minfltPerStep: j.minflt_per_step as number | undefined, version: j.version as string | undefined, profile: j.profile,
  };
}

function describe(config: string): string {
  const c = CONFIGS[config];
  const m = c.model;
  return `${m.inputSize}x${m.inputSize}x${m.inChannels}, patch ${m.patchSize}, hidden ${m.hiddenSize}, depth ${m.depth}, ` +
    `heads ${m.numHeads}, batch ${c.batch}, ${m.numClasses} classes`;
}

function main(): void {
  const o = parse(process.argv.slice(2));
  console.log(`bench:engine  device ${o.device}  host ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})  ` +
    `load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}  python ${o.python}  malloc ${o.malloc}`);
  const bf16 = torch.cpuFeatures().bf16;
  if (o.device === 'cpu') console.log(`cpu bf16 instructions: ${bf16.length ? bf16.join(', ') : 'none (bf16 is emulated: expect it slower than fp32)'}`);
  for (const config of o.configs) {
    for (const precision of o.precisions) {
      const label = o.device === 'cuda' ? `${config}@cuda-${precision}` : precision === 'fp32' ? config : `${config}-${precision}`;
      console.log(`config ${label}: ${describe(config)}`);
      const best: Record<'ts' | 'torch', { sps: number; setting: string } | null> = { ts: null, torch: null };
      const settings = o.threads.flatMap((threads) => o.blasThreads.map((blas) => ({ threads, blas })));
      for (let rep = 0; rep < o.repeat; rep++) {
        for (const { threads, blas } of settings) {
          // Interleave the sides so slow drifts in machine load hit both alike.
          const order = rep % 2 ? [...o.sides].reverse() : o.sides;
          for (const side of order) {
            const r = runChild(side, config, threads, blas, precision, o);
            const name = side === 'ts' ? 'ts   ' : 'torch';
            const setting = `threads=${threads} blas=${blas}`;
            if (!r.ok) {
              console.log(`  ${name} ${setting}  failed: ${r.error}`);
              continue;
            }
            const cpu = r.cpuSeconds !== undefined ? `, cpu ${(r.cpuSeconds / r.seconds).toFixed(2)}x wall` : '';
            const sys = r.sysSeconds !== undefined ? `, sys ${(r.sysSeconds / r.steps).toFixed(3)} s/step` : '';
            const flt = r.minfltPerStep !== undefined ? `, ${Math.round(r.minfltPerStep)} faults/step` : '';
            console.log(`  ${name} ${setting}  ${r.stepsPerS.toFixed(3)} steps/s  (${r.steps} steps in ${r.seconds.toFixed(2)} s${cpu}${sys}${flt}${r.version ? `, torch ${r.version}` : ''})`);
            if (r.profile) console.log(`    profile ${JSON.stringify(r.profile)}`);
            const b = best[side];
            if (!b || r.stepsPerS > b.sps) best[side] = { sps: r.stepsPerS, setting };
          }
        }
      }
      const fmt = (b: { sps: number; setting: string } | null): string => (b ? `${b.sps.toFixed(3)} steps/s (${b.setting})` : 'n/a');
      console.log(`  best  ts ${fmt(best.ts)}  torch ${fmt(best.torch)}`);
      console.log(`ratio ${label} ${best.ts && best.torch ? (best.ts.sps / best.torch.sps).toFixed(3) : 'n/a'}`);
    }
  }
}

main();
