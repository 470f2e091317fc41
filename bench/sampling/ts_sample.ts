// DDPM sampling with classifier-free guidance on difftune's engine: the TypeScript side of
// `npm run bench:sampling`. The same loop as `difftune sample` (src/cli/sample.ts): z = randn,
// cfgBatch (x = [z; z], y = [y; null]), diffusion.pSampleLoop over model.forwardWithCfg with
// clipDenoised false, conditionalHalf; the diffusion is createDiffusion({ timestepRespacing }).
// Run by run.ts as a child process with an explicit thread environment: one short warm-up loop,
// then --loops timed loops; prints one JSON line.
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { DiT } from '../../src/models/dit';
import { createDiffusion } from '../../src/diffusion/create';
import { cfgBatch, conditionalHalf } from '../../src/diffusion/cfg';

interface Args {
  inputSize: number;
  inChannels: number;
  patchSize: number;
  hiddenSize: number;
  depth: number;
  numHeads: number;
  numClasses: number;
  batch: number;
  steps: number;
  warmupSteps: number;
  loops: number;
  cfg: number;
  threads: number;
  blasThreads: number;
  device: 'cpu' | 'cuda';
  seed: number;
  precision: 'fp32' | 'bf16';
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    inputSize: 32, inChannels: 3, patchSize: 4, hiddenSize: 192, depth: 6, numHeads: 6, numClasses: 10,
    batch: 8, steps: 250, warmupSteps: 5, loops: 1, cfg: 4, threads: 1, blasThreads: 0, device: 'cpu', seed: 0, precision: 'fp32',
  };
  const ints: Record<string, keyof Args> = {
    '--input-size': 'inputSize', '--in-channels': 'inChannels', '--patch-size': 'patchSize', '--hidden-size': 'hiddenSize',
    '--depth': 'depth', '--num-heads': 'numHeads', '--num-classes': 'numClasses', '--batch': 'batch', '--steps': 'steps',
    '--warmup-steps': 'warmupSteps', '--loops': 'loops', '--threads': 'threads', '--blas-threads': 'blasThreads', '--seed': 'seed',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k in ints) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${k} must be a non-negative integer, got '${v}'`);
      (a as unknown as Record<string, number>)[ints[k]] = n;
    } else if (k === '--cfg') a.cfg = Number(v);
    else if (k === '--device') {
      if (v !== 'cpu' && v !== 'cuda') throw new Error(`--device must be cpu or cuda, got '${v}'`);
      a.device = v;
    } else if (k === '--precision') {
      if (v !== 'fp32' && v !== 'bf16') throw new Error(`--precision must be fp32 or bf16, got '${v}'`);
      a.precision = v;
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

function main(): void {
  const a = parseArgs(process.argv.slice(2));
  const cuda = a.device === 'cuda';
  const device = a.device;
  torch.setNumThreads(a.threads);
  // OPENBLAS_NUM_THREADS is set by the runner; this only makes the count explicit on our side.
  if (a.blasThreads > 0) torch.setBlasThreads(a.blasThreads);
  torch.manualSeed(a.seed);
  if (cuda) {
    if (!torch.cuda.isAvailable()) throw new Error('--device cuda: this libtorch build has no CUDA device');
    torch.setFloat32MatmulPrecision('highest');
    torch.setCudnn({ benchmark: false, allowTf32: false });
  }

  const model = new DiT({
    inputSize: a.inputSize, inChannels: a.inChannels, patchSize: a.patchSize, hiddenSize: a.hiddenSize, depth: a.depth,
    numHeads: a.numHeads, numClasses: a.numClasses, mlpRatio: 4, classDropoutProb: 0.1, learnSigma: true,
  });
  if (cuda) model.to('cuda');
  model.eval();
  const n = a.batch;
  const { inChannels: C, inputSize: H, numClasses: K } = a;
  const labels = Array.from({ length: n }, (_, i) => i % K);
  const sync = (): void => {
    if (cuda) torch.cuda.synchronize();
  };

  // As src/cli/sample.ts does it for one batch (ddpm sampler, cfg != 1).
  const sample = (diffusion: ReturnType<typeof createDiffusion>): Tensor => torch.noGrad(() => torch.scope(() => {
    const y = torch.tensor(labels, { dtype: 'int64', device });
    const z = torch.randn([n, C, H, H], { device });
    const batch = cfgBatch(z, y, K);
    // bf16: autocast around the model, as `difftune sample --precision bf16` (the sampler's math stays float32).
    const modelFn = torch.modelInPrecision(a.precision, device, (x: Tensor, t: Tensor, k: { y: Tensor }): Tensor => model.forwardWithCfg(x, t, k.y, a.cfg));
    const out = diffusion.pSampleLoop(modelFn, batch.x.shape, { noise: batch.x, modelKwargs: { y: batch.y }, clipDenoised: false, device });
    return conditionalHalf(out);
  }));

  const warm = createDiffusion({ timestepRespacing: String(a.warmupSteps), learnSigma: true });
  sample(warm).dispose();
  warm.dispose();
  sync();
  const diffusion = createDiffusion({ timestepRespacing: String(a.steps), learnSigma: true });
  let out: Tensor | undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < a.loops; i++) {
    out?.dispose();
    out = sample(diffusion);
  }
  sync();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (!out) throw new Error('no loops ran');
  const checksum = torch.scope(() => out!.abs().mean().item());
  out.dispose();
  const images = n * a.loops;
  console.log(JSON.stringify({
    side: 'ts', blas: torch.describeBlas(), device: a.device, threads: a.threads, images, steps: diffusion.numTimesteps, seconds,
    images_per_s: images / seconds, ms_per_step: (seconds * 1000) / (a.loops * diffusion.numTimesteps),
    cpu_seconds: (cpu.user + cpu.system) / 1e6, checksum, finite: Number.isFinite(checksum), version: torch.buildInfo().torchVersion,
  }));
}

try {
  main();
} catch (e: unknown) {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
}
