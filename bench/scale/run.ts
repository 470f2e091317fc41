// `npm run bench:scale`: the DiT training step at scale, DiT-B/2 and DiT-XL/2 on 256x256 latents
// (32x32x4, batch 32, random weights), on difftune (ts_step.ts) and in Python PyTorch
// (scale_step.py) on the same device in the same run, at TF32 (fp32 weights, TF32 matmuls) and bf16
// autocast; then the measured bf16 matmul rate and the model FLOPs utilisation of DiT-XL/2 bf16.
// Last lines: `ratio <model>-<precision> <ts steps/s / torch steps/s>` per row, then `mfu ...`.
//
//   node dist/bench/scale/run.js [--device cuda|cpu] [--model DiT-B/2,DiT-XL/2|small] [--precision tf32,bf16]
//     [--steps N] [--min-seconds S] [--python PATH] [--timeout S]
//
// On a CPU (no GPU) `--model small` runs the same plumbing in seconds; the Python side needs a
// PyTorch for the device (--python PATH or $PYTHON; CUDA: torch >= 2 has fused attention on both sides).
import * as os from 'node:os';
import * as path from 'node:path';
import { childEnv, noteBlas, runJsonChild } from '../child';
import { Args } from '../args';
import { PRECISIONS, Precision } from '../engine/configs';
import { ditStepFlops, SCALE_MODELS } from './configs';

interface Options {
  device: 'cpu' | 'cuda';
  models: string[];
  precisions: Precision[];
  steps: number;
  minSeconds: number;
  python: string;
  timeoutS: number;
}

function usage(msg?: string): never {
  if (msg) console.error(`bench:scale: ${msg}`);
  console.error('usage: run.js [--device cuda|cpu] [--model DiT-B/2,DiT-XL/2|small] [--precision tf32,bf16]\n' +
    '  [--steps N] [--min-seconds S] [--python PATH] [--timeout S]');
  process.exit(2);
}

export function parseScaleArgs(argv: string[]): Options {
  let models: string[] | undefined;
  let precisions: Precision[] | undefined;
  const o: Options = {
    device: 'cuda', models: [], precisions: [], steps: 0, minSeconds: 10, python: process.env.PYTHON ?? '', timeoutS: 600,
  };
  const a = new Args(argv, usage);
  for (let k = a.flag(); k !== undefined; k = a.flag()) {
    switch (k) {
      case '--device': o.device = a.choice(['cpu', 'cuda'] as const); break;
      case '--model': models = a.value().split(','); break;
      case '--precision': precisions = a.value().split(',') as Precision[]; break;
      case '--steps': o.steps = a.int(a.value(), '--steps'); break;
      case '--min-seconds': o.minSeconds = Number(a.value()); break;
      case '--python': o.python = a.value(); break;
      case '--timeout': o.timeoutS = a.int(a.value(), '--timeout'); break;
      case '-h': case '--help': return usage();
      default: return usage(`unknown argument '${k}'`);
    }
  }
  o.models = models ?? (o.device === 'cuda' ? ['DiT-B/2', 'DiT-XL/2'] : ['small']);
  for (const m of o.models) if (!SCALE_MODELS[m]) usage(`unknown model '${m}' (${Object.keys(SCALE_MODELS).join(', ')})`);
  if (o.device === 'cpu' && o.models.some((m) => SCALE_MODELS[m].config.cudaOnly)) usage(`${o.models.join(', ')}: too large for the CPU; use --model small`);
  o.precisions = precisions ?? (o.device === 'cuda' ? ['tf32', 'bf16'] : ['fp32']);
  for (const p of o.precisions) if (!PRECISIONS.includes(p)) usage(`unknown precision '${p}' (${PRECISIONS.join(', ')})`);
  if (o.device === 'cpu' && o.precisions.some((p) => p !== 'fp32')) usage('--precision applies to --device cuda only');
  // The CPU peer is Debian's python3-torch; on a CUDA machine, the python3 whose torch has CUDA.
  o.python ||= o.device === 'cpu' ? '/usr/bin/python3' : 'python3';
  return o;
}

function run(side: 'ts' | 'torch', model: string, precision: Precision, o: Options): { sps: number } | { error: string } {
  const { key, config } = SCALE_MODELS[model];
  // CUDA: one host thread; CPU: half the cores for both sides (as the CLI's default).
  const threads = o.device === 'cuda' ? 1 : Math.max(1, Math.floor(os.cpus().length / 2));
  const common = ['--config', key, '--threads', String(threads), '--device', o.device, '--precision', precision,
    '--min-seconds', String(o.minSeconds), ...(o.steps ? ['--steps', String(o.steps)] : [])];
  const [cmd, args] = side === 'ts'
    ? [process.execPath, [path.join(__dirname, 'ts_step.js'), ...common]]
    : [o.python, [path.join(__dirname, '..', '..', '..', 'bench', 'scale', 'scale_step.py'), ...common, '--model-json', JSON.stringify({ key, ...config })]];
  const r = runJsonChild(cmd, args, childEnv(threads, threads), o.timeoutS);
  if (!r.ok) return { error: r.error };
  noteBlas(side, r.json);
  return { sps: r.json.steps_per_s as number };
}

function main(): void {
  const o = parseScaleArgs(process.argv.slice(2));
  console.log(`bench:scale  device ${o.device}  host ${os.cpus().length} CPUs  python ${o.python}  models ${o.models.join(', ')}  precisions ${o.precisions.join(', ')}`);
  const ratios: string[] = [];
  const sps = new Map<string, { ts?: number; torch?: number }>();
  for (const model of o.models) {
    const c = SCALE_MODELS[model].config;
    for (const precision of o.precisions) {
      const label = `${model}-${precision}`;
      const row: { ts?: number; torch?: number } = {};
      // Alternate which side goes first, so drifts in clocks or load hit both alike.
      const order: ('ts' | 'torch')[] = ratios.length % 2 ? ['torch', 'ts'] : ['ts', 'torch'];
      for (const side of order) {
        const r = run(side, model, precision, o);
        if ('error' in r) {
          console.log(`  ${label} ${side.padEnd(5)} failed: ${r.error}`);
          continue;
        }
        row[side] = r.sps;
        console.log(`  ${label} ${side.padEnd(5)} ${r.sps.toFixed(3)} steps/s  ${(r.sps * c.batch).toFixed(1)} img/s  ${(r.sps * ditStepFlops(c) / 1e12).toFixed(2)} TFLOP/s`);
      }
      sps.set(label, row);
      ratios.push(`ratio ${label} ${row.ts && row.torch ? (row.ts / row.torch).toFixed(3) : 'n/a'}`);
    }
  }
  // Model FLOPs utilisation of the largest model at bf16 (CUDA) or fp32 (CPU), against the measured matmul rate.
  const big = o.models[o.models.length - 1];
  const precision: Precision = o.device === 'cuda' ? 'bf16' : 'fp32';
  const row = sps.get(`${big}-${precision}`);
  const rate = runJsonChild(process.execPath, [path.join(__dirname, 'ts_step.js'), '--matmul-rate', o.device], childEnv(1, 1), o.timeoutS);
  for (const r of ratios) console.log(r);
  if (!rate.ok || !row) {
    console.log(`mfu ${big}-${precision} n/a (${rate.ok ? `no ${precision} row` : rate.error})`);
    return;
  }
  const peak = (rate.json.tflops as number) * 1e12;
  const flops = ditStepFlops(SCALE_MODELS[big].config);
  const mfu = (s?: number): string => (s ? (s * flops / peak).toFixed(3) : 'n/a');
  console.log(`mfu ${big}-${precision} ts ${mfu(row.ts)} torch ${mfu(row.torch)} (measured ${rate.json.matmul} matmul ${(peak / 1e12).toFixed(1)} TFLOP/s)`);
}

if (require.main === module) main();
