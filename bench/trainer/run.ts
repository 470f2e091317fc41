// `npm run bench:trainer`: what the trainer adds to a training step. The same DiT and batch run
// (a) a bare step: uniform t, forward, loss, backward, AdamW; and (b) the trainer's full step:
// the diff-tuning mixed batch (target + replay from two iterators, psi/xi timesteps, null
// labels), EMA update, gradient norm, NaN guard, logging. Rounds alternate (bare, trainer) so
// drift in machine speed hits both; the ratio compares medians. Last line:
//   ratio trainer <bare_time / trainer_time>   (1.0 = free; the goal is >= 1/1.05 = 0.952)
import { configureThreads } from '../../src/cli/threads';
import { ImageDataset } from '../../src/data/image-dataset';
import { createDiffusion } from '../../src/diffusion/create';
import { DiT } from '../../src/models/dit';
import * as torch from '../../src/torch';
import { noteBlas } from '../child';
import { resolveConfig } from '../../src/tuning/config';
import { Trainer } from '../../src/tuning/trainer';
import { Args } from '../args';
import { CONFIGS } from '../engine/configs';

function usage(msg: string): never {
  console.error(`${msg}\nusage: bench:trainer [--config small|tiny] [--rounds 5] [--steps 8] [--device cpu|cuda]`);
  process.exit(2);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function randomImages(n: number, size: number, classes: number, seed: number): ImageDataset {
  const g = new torch.Generator('cpu', seed);
  const images = torch.randint(0, 256, [n, 3, size, size], { generator: g }).to({ dtype: 'uint8' });
  const labels = torch.randint(0, classes, [n], { generator: g });
  return ImageDataset.fromTensors(images, labels);
}

async function main(): Promise<void> {
  let configName = 'small';
  let rounds = 5;
  let steps = 8;
  let device: 'cpu' | 'cuda' = 'cpu';
  const args = new Args(process.argv.slice(2), usage);
  for (let f = args.flag(); f !== undefined; f = args.flag()) {
    if (f === '--config') configName = args.choice(['small', 'tiny']);
    else if (f === '--rounds') rounds = args.int(args.value(), '--rounds');
    else if (f === '--steps') steps = args.int(args.value(), '--steps');
    else if (f === '--device') device = args.choice(['cpu', 'cuda']);
    else usage(`unknown flag ${f}`);
  }
  configureThreads();
  noteBlas('ts', { blas: torch.describeBlas() }); // one side only: this bench has no PyTorch peer
  const bench = CONFIGS[configName];
  const m = { ...bench.model, inChannels: 3 };
  const batch = bench.batch;

  // (a) the bare step.
  torch.manualSeed(0);
  const bare = new DiT(m).to(device);
  const bareOpt = new torch.optim.AdamW(bare.parameters().filter((p) => p.requiresGrad), { lr: 1e-4, weightDecay: 0 });
  const diffusion = createDiffusion({ timestepRespacing: '' });
  const data = randomImages(512, m.inputSize, m.numClasses, 1);
  const bareStep = (): void => torch.scope(() => {
    const idx = Array.from({ length: batch }, () => Math.floor(Math.random() * data.length));
    const { x, y } = data.batch(idx);
    const t = torch.randint(0, 1000, [batch]);
    const terms = diffusion.trainingLosses((xt, tt, k: { y: torch.Tensor }) => bare.forward(xt, tt, k.y),
      x.to({ device }), t.to({ device }), { modelKwargs: { y: y.to({ device }) } });
    terms.loss.mean().backward();
    bareOpt.step();
    bareOpt.zeroGrad();
  });

  // (b) the trainer's step on the same model size and batch, diff-tuning with EMA and logs.
  torch.manualSeed(0);
  const config = resolveConfig({
    values: {
      method: 'diff-tuning',
      model: { ckpt: '(in memory)' },
      data: { target: '(in memory)', bank: '(in memory)' },
      optim: { batchSize: batch },
      run: { steps: 1e9, device, out: `/tmp/difftune-bench-trainer-${process.pid}`, logEvery: 10, checkpointEvery: 1e9, previewEvery: 0 },
    },
  });
  const model = new DiT(m);
  const trainer = new Trainer(config, {
    model, target: data, classes: Array.from({ length: m.numClasses }, (_, i) => String(i)), bank: randomImages(256, m.inputSize, 1, 2),
    flipTarget: true, flipBank: true, pretrainedSha256: null,
  }, { log: () => {}, progress: false });
  trainer.model.train();

  const sync = (): void => { if (device === 'cuda') torch.cuda.synchronize(); };
  const time = (fn: () => void): number => {
    sync();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < steps; i++) fn();
    sync();
    return Number(process.hrtime.bigint() - t0) / 1e9 / steps;
  };
  for (let i = 0; i < 3; i++) { bareStep(); trainer.advance(); }
  const bareTimes: number[] = [];
  const trainerTimes: number[] = [];
  for (let r = 0; r < rounds; r++) {
    bareTimes.push(time(bareStep));
    trainerTimes.push(time(() => trainer.advance()));
    console.log(`round ${r + 1}/${rounds}: bare ${(bareTimes[r] * 1000).toFixed(1)} ms/step, trainer ${(trainerTimes[r] * 1000).toFixed(1)} ms/step`);
  }
  trainer.dispose();
  const b = median(bareTimes);
  const t = median(trainerTimes);
  console.log(`config ${configName} (batch ${batch}, ${model.numParameters()} parameters) on ${device}; threads: ${torch.getNumThreads()} OpenMP`);
  console.log(`median bare ${(b * 1000).toFixed(1)} ms/step, trainer ${(t * 1000).toFixed(1)} ms/step`);
  console.log(`ratio trainer ${(b / t).toFixed(3)}`);
}

main().catch((e: Error) => {
  console.error(e.stack);
  process.exit(1);
});
