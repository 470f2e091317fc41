// One DiT training step on difftune's engine: the TypeScript side of `npm run bench:engine`.
// The same step as dit_step.py: random x / noise / t / y, forward, MSE of the eps half against
// the noise, backward, AdamW (lr 1e-4, wd 0), zero grads (set to none).
// Run by run.ts as a child process; prints one JSON line. `--profile` adds a breakdown (native
// calls per step by op, time in forward / backward / optimizer, GC pauses).
import { PerformanceObserver } from 'node:perf_hooks';
import * as torch from '../../src/torch';
import { native } from '../../src/torch/native';
import { DiT } from '../../src/models/dit';
import { CONFIGS, Precision } from './configs';

interface Args {
  config: string;
  threads: number;
  steps: number;
  minSeconds: number;
  warmup: number;
  device: 'cpu' | 'cuda';
  precision: Precision;
  seed: number;
  profile: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { config: 'tiny', threads: 1, steps: 0, minSeconds: 10, warmup: 3, device: 'cpu', precision: 'fp32', seed: 0, profile: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${k} needs a value`);
      return next;
    };
    switch (k) {
      case '--config': a.config = v(); break;
      case '--threads': a.threads = Number(v()); break;
      case '--steps': a.steps = Number(v()); break;
      case '--min-seconds': a.minSeconds = Number(v()); break;
      case '--warmup': a.warmup = Number(v()); break;
      case '--device': a.device = v() as Args['device']; break;
      case '--precision': a.precision = v() as Precision; break;
      case '--seed': a.seed = Number(v()); break;
      case '--profile': a.profile = true; break;
      default: throw new Error(`unknown argument ${k}`);
    }
  }
  if (!CONFIGS[a.config]) throw new Error(`unknown config ${a.config}`);
  return a;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const cfg = CONFIGS[a.config];
  const cuda = a.device === 'cuda';
  torch.setNumThreads(a.threads);
  torch.manualSeed(a.seed);
  if (cuda) {
    if (!torch.cuda.isAvailable()) throw new Error('--device cuda: this libtorch build has no CUDA device');
    const tf32 = a.precision === 'tf32';
    torch.setFloat32MatmulPrecision(tf32 ? 'high' : 'highest');
    torch.setCudnn({ benchmark: false, allowTf32: tf32 });
  }

  const model = new DiT({ ...cfg.model, mlpRatio: 4, classDropoutProb: 0.1, learnSigma: true });
  if (cuda) model.to('cuda');
  model.train();
  const params = model.parameters().filter((p) => p.requiresGrad);
  const opt = new torch.optim.AdamW(params, { lr: 1e-4, weightDecay: 0 });
  const { batch } = cfg;
  const { inChannels: C, inputSize: H, numClasses: K } = cfg.model;
  const device = a.device;

  const phase = { forward: 0, backward: 0, optimizer: 0 };
  const now = (): number => Number(process.hrtime.bigint()) / 1e6;
  const sync = (): void => {
    if (cuda) torch.cuda.synchronize();
  };

  const step = (): void => {
    torch.scope(() => {
      const t0 = a.profile ? now() : 0;
      const x = torch.randn([batch, C, H, H], { device });
      const noise = torch.randn([batch, C, H, H], { device });
      const t = torch.randint(0, 1000, [batch], { device });
      const y = torch.randint(0, K, [batch], { device });
      const run = (): torch.Tensor => torch.F.mseLoss(model.forward(x, t, y).slice(1, 0, C), noise);
      const loss = a.precision === 'bf16' ? torch.autocast(run, { deviceType: device, dtype: 'bfloat16' }) : run();
      const t1 = a.profile ? now() : 0;
      loss.backward();
      const t2 = a.profile ? now() : 0;
      opt.step();
      opt.zeroGrad();
      if (a.profile) {
        const t3 = now();
        phase.forward += t1 - t0;
        phase.backward += t2 - t1;
        phase.optimizer += t3 - t2;
      }
    });
  };

  for (let i = 0; i < a.warmup; i++) step();
  sync();
  let steps = a.steps;
  if (steps <= 0) {
    const t0 = performance.now();
    for (let i = 0; i < 2; i++) step();
    sync();
    const per = (performance.now() - t0) / 2 / 1000;
    steps = Math.max(5, Math.ceil((a.minSeconds * 1.05) / per));
  }

  // Profiling: count native calls per op and GC pauses during the timed steps.
  const calls = new Map<string, number>();
  let gcMs = 0;
  let gcCount = 0;
  let observer: PerformanceObserver | undefined;
  if (a.profile) {
    phase.forward = phase.backward = phase.optimizer = 0;
    const names = new Map<number, string>();
    const nameOf = (i: number): string => {
      let n = names.get(i);
      if (!n) {
        n = native.opSchema(i).split('(')[0];
        names.set(i, n);
      }
      return n;
    };
    const count = (n: string): void => {
      calls.set(n, (calls.get(n) ?? 0) + 1);
    };
    const table = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const key of Object.keys(table)) {
      const fn = table[key];
      if (typeof fn !== 'function' || key === 'opSchema') continue;
      table[key] = key === 'call' || key === 'callVoid'
        ? (i: unknown, ...rest: unknown[]) => {
          count(nameOf(i as number));
          return fn.call(native, i, ...rest);
        }
        : (...args: unknown[]) => {
          count(`<${key}>`);
          return fn.apply(native, args);
        };
    }
    observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        gcMs += e.duration;
        gcCount++;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
  }

  const ru0 = process.resourceUsage();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  sync();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const ru = process.resourceUsage();
  const faultsPerStep = (ru.minorPageFault - ru0.minorPageFault) / steps;

  const result: Record<string, unknown> = {
    blas: torch.describeBlas(),
    side: 'ts', config: a.config, device: a.device, precision: a.precision, threads: a.threads,
    steps, seconds, steps_per_s: steps / seconds, cpu_seconds: cpuSeconds, sys_seconds: cpu.system / 1e6, minflt_per_step: faultsPerStep, version: torch.buildInfo().torchVersion,
  };
  if (a.profile) {
    await new Promise((resolve) => setTimeout(resolve, 50)); // GC entries arrive asynchronously
    observer?.disconnect();
    const total = [...calls.values()].reduce((s, n) => s + n, 0);
    result.profile = {
      native_calls_per_step: total / steps,
      by_op: Object.fromEntries([...calls].sort((p, q) => q[1] - p[1]).map(([k, n]) => [k, +(n / steps).toFixed(2)])),
      ms_per_step: {
        forward: phase.forward / steps, backward: phase.backward / steps, optimizer: phase.optimizer / steps,
      },
      gc_ms_per_step: gcMs / steps,
      gc_events_per_step: gcCount / steps,
    };
  }
  console.log(JSON.stringify(result));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});
