// One evaluation set per model: the same labels and the same starting noise x_T for every model
// (DDIM with eta 0 draws nothing else), so the pretrained, full and Diff-Tuning samples differ only
// by the weights and their grids can be compared image by image.
import { createDiffusion } from '../diffusion/create';
import { DiT } from '../models/dit';
import { ProgressBar } from '../report/progress';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { sampleDiT } from '../tuning/bank';

export interface SampleSetOptions {
  /** Target class of each sample (the model's label ids). */
  labels: readonly number[];
  /** Seed of x_T (a private CPU generator: the global random state is left alone). */
  seed: number;
  /** DDIM steps out of 1000. */
  steps: number;
  /** Classifier-free guidance scale (1 = none). */
  cfg: number;
  batchSize: number;
  /** Progress bar label (none when absent). */
  label?: string;
}

/** DDIM samples of `model` for the given labels: float32 [N, C, H, W] in [-1, 1] on the CPU (kept; the caller disposes). */
export function sampleSet(model: DiT, o: SampleSetOptions): Tensor {
  const c = model.config;
  const n = o.labels.length;
  if (n === 0) throw new RangeError('sampleSet: no labels');
  const bad = o.labels.find((y) => !Number.isInteger(y) || y < 0 || y >= c.numClasses);
  if (bad !== undefined) throw new RangeError(`sampleSet: label ${bad} is not a class of the model (0..${c.numClasses - 1})`);
  if (o.cfg !== 1 && !(c.classDropoutProb > 0)) throw new Error('sampleSet: guidance needs a null label, but the model was trained without label dropout');
  const device = model.pos_embed.device;
  const diffusion = createDiffusion({ timestepRespacing: String(o.steps), learnSigma: c.learnSigma });
  const generator = new torch.Generator('cpu', o.seed);
  const xT = torch.randn([n, c.inChannels, c.inputSize, c.inputSize], { generator }).keep();
  const batches = Math.ceil(n / o.batchSize);
  const bar = o.label ? new ProgressBar({ total: batches * diffusion.numTimesteps, label: o.label }) : null;
  const parts: Tensor[] = [];
  model.eval();
  try {
    for (let b = 0; b < batches; b++) {
      const start = b * o.batchSize;
      const rows = Math.min(o.batchSize, n - start);
      parts.push(torch.scope(() => {
        const noise = xT.narrow(0, start, rows).to({ device });
        return sampleDiT(model, diffusion, {
          labels: torch.tensor(o.labels.slice(start, start + rows), { dtype: 'int64', device }),
          noise, stepNoise: () => torch.zerosLike(noise),
          cfg: o.cfg, guideChannels: 3, sampler: 'ddim', eta: 0, clip: true, device,
          progress: (done) => bar?.update(b * diffusion.numTimesteps + done),
        }).to({ device: 'cpu', dtype: 'float32' });
      }).keep());
    }
    bar?.done();
    return parts.length === 1 ? parts.pop()! : torch.scope(() => torch.cat(parts, 0)).keep();
  } finally {
    for (const p of parts) p.dispose();
    xT.dispose();
    diffusion.dispose();
  }
}
