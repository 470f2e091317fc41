// `difftune demo`: trains a tiny class-conditional DiT on built-in procedural images (no files,
// no network), samples its EMA weights with DDIM and classifier-free guidance, and writes a
// grid and the weights (loadable by `difftune sample`).
// The full Diff-Tuning demo (source model, knowledge bank, report) builds on this.
import * as fs from 'fs';
import * as path from 'path';
import { makeShapes, SHAPE_CLASSES } from '../data/shapes';
import { createDiffusion } from '../diffusion/create';
import { cfgBatch, conditionalHalf } from '../diffusion/cfg';
import { DiT } from '../models/dit';
import { saveDiT } from '../models/dit-io';
import { Ema } from '../tuning/ema';
import { saveImageGrid } from '../report/grid';
import * as torch from '../torch';
import { parseFlags } from './args';
import { configureThreads } from './threads';

const FLAGS = {
  steps: { type: 'number', default: 1500, help: 'training steps' },
  batch: { type: 'number', default: 64, help: 'batch size' },
  lr: { type: 'number', default: 1e-3, help: 'AdamW learning rate' },
  out: { type: 'string', default: 'demo-out', help: 'output folder' },
  seed: { type: 'number', default: 0, help: 'random seed' },
  cfg: { type: 'number', default: 2.0, help: 'classifier-free guidance scale for the samples' },
  quick: { type: 'boolean', default: false, help: 'a 200-step run to check the pipeline' },
} as const;

export async function runDemo(argv: string[]): Promise<void> {
  const flags = parseFlags('demo', 'Train a tiny DiT on built-in shapes and sample it.', FLAGS, argv);
  if (!flags) return;
  const steps = flags.quick ? 200 : flags.steps;
  configureThreads();
  torch.manualSeed(flags.seed);
  fs.mkdirSync(flags.out, { recursive: true });

  const size = 16;
  const data = makeShapes(4096, size, flags.seed);
  data.images.keep();
  data.labels.keep();
  const model = new DiT({
    inputSize: size, patchSize: 2, inChannels: 3, hiddenSize: 96, depth: 4, numHeads: 4,
    numClasses: SHAPE_CLASSES.length, classDropoutProb: 0.1, learnSigma: true,
  });
  const diffusion = createDiffusion({ timestepRespacing: '' });
  const opt = new torch.optim.AdamW(model.parameters(), { lr: flags.lr, weightDecay: 0 });
  const ema = new Ema(model, 0.995);
  console.log(`difftune demo: DiT with ${model.numParameters()} parameters on ${SHAPE_CLASSES.join('/')} images ` +
    `(${size}x${size}), ${steps} steps of batch ${flags.batch}`);

  const start = Date.now();
  let running = 0;
  model.train();
  for (let step = 1; step <= steps; step++) {
    const loss = torch.scope(() => {
      const idx = torch.randint(0, data.images.shape[0], [flags.batch]);
      const x = data.images.indexSelect(0, idx);
      const y = data.labels.indexSelect(0, idx);
      const t = torch.randint(0, diffusion.numTimesteps, [flags.batch]);
      const terms = diffusion.trainingLosses((xt, tt, k: { y: torch.Tensor }) => model.forward(xt, tt, k.y), x, t,
        { modelKwargs: { y } });
      const mean = terms.loss.mean();
      opt.zeroGrad();
      mean.backward();
      opt.step();
      ema.update(model);
      return mean.item();
    });
    running = step === 1 ? loss : 0.98 * running + 0.02 * loss;
    if (step % 100 === 0 || step === steps) {
      const rate = step / ((Date.now() - start) / 1000);
      console.log(`  step ${step}/${steps}  loss ${running.toFixed(4)}  ${rate.toFixed(1)} steps/s`);
    }
  }

  // Sample from the averaged weights, as DiT does.
  const sampler = new DiT(model.config, { initialize: false });
  sampler.loadStateDict(ema.stateDict(model));
  sampler.eval();
  const perClass = 8;
  const labels = torch.tensor(SHAPE_CLASSES.flatMap((_, k) => Array(perClass).fill(k)), { dtype: 'int64' });
  const diffusionForSampling = createDiffusion({ timestepRespacing: 'ddim50' });
  const samples = torch.scope(() => {
    const z = torch.randn([labels.shape[0], 3, size, size]);
    const batch = cfgBatch(z, labels, SHAPE_CLASSES.length);
    const out = diffusionForSampling.ddimSampleLoop(
      (x, t, k: { y: torch.Tensor }) => sampler.forwardWithCfg(x, t, k.y, flags.cfg, { guideChannels: 'all' }),
      batch.x.shape, { noise: batch.x, modelKwargs: { y: batch.y }, clipDenoised: true });
    return conditionalHalf(out);
  });
  const grid = path.join(flags.out, 'samples.png');
  saveImageGrid(grid, samples, perClass, 4);
  saveImageGrid(path.join(flags.out, 'training-images.png'), data.images.slice(0, 0, 32), perClass, 4);
  saveDiT(path.join(flags.out, 'model.safetensors'), sampler);
  console.log(`done in ${((Date.now() - start) / 1000).toFixed(0)} s. Samples (one row per class: ${SHAPE_CLASSES.join(', ')}): ${grid}`);
  console.log(`training images for comparison: ${path.join(flags.out, 'training-images.png')}; weights: ${path.join(flags.out, 'model.safetensors')}`);
}
