// Preview grids during training: the same noise and labels every time (private generators, so
// previews never disturb the training's random streams), sampled with DDIM and guidance. The
// first grid (step 0) is the pretrained model; every later grid shows it as the top row, with the
// current EMA model below, so drift and adaptation are visible side by side.
import * as fs from 'fs';
import * as path from 'path';
import { createDiffusion } from '../diffusion/create';
import { SpacedDiffusion } from '../diffusion/spaced-diffusion';
import { DiT } from '../models/dit';
import { imageGridPng } from '../report/grid';
import * as torch from '../torch';
import { Generator, Tensor } from '../torch';
import { sampleDiT } from './bank';
import { writeFileAtomic } from './write-atomic';

export interface PreviewOptions {
  count: number;
  numClasses: number;
  steps: number;
  cfg: number;
  seed: number;
}

/** Where preview images go besides disk (the TensorBoard writer). */
export interface ImageSink {
  image(tag: string, png: Buffer, width: number, height: number, step: number): void;
}

/**
 * DDIM samples ([-1, 1], on the CPU) for the given labels, with guidance when cfg > 1. All noise
 * comes from a private generator seeded with `seed`, so training's random streams are untouched
 * and the same call gives the same images.
 */
export function sampleWithSeed(model: DiT, diffusion: SpacedDiffusion,
  o: { labels: number[]; seed: number; cfg: number; precision?: torch.Precision }): Tensor {
  const device = model.pos_embed.device;
  const g = new Generator('cpu', BigInt(o.seed));
  const c = model.config;
  const shape = [o.labels.length, c.inChannels, c.inputSize, c.inputSize];
  return torch.noGrad(() => torch.scope(() => sampleDiT(model, diffusion, {
    labels: torch.tensor(o.labels, { dtype: 'int64', device }),
    noise: torch.randn(shape, { generator: g }).to({ device }),
    // The step noise comes from the private generator too (DDIM draws it even at eta 0), so training's streams stay untouched.
    stepNoise: () => torch.randn(shape, { generator: g }).to({ device }),
    cfg: o.cfg > 1 && c.classDropoutProb > 0 ? o.cfg : 1, guideChannels: 'all', sampler: 'ddim', eta: 0, clip: true, device, precision: o.precision,
  }).to({ device: 'cpu' })));
}

export class Previewer {
  private readonly dir: string;
  private readonly diffusion: SpacedDiffusion;
  private pretrained: Tensor | null = null;

  constructor(out: string, readonly o: PreviewOptions) {
    this.dir = path.join(out, 'previews');
    this.diffusion = createDiffusion({ timestepRespacing: `ddim${o.steps}` });
    const cached = path.join(this.dir, 'pretrained.safetensors');
    if (fs.existsSync(cached)) this.pretrained = torch.loadSafetensors(cached).get('samples')!.keep();
  }

  /** Samples the model as it is now (callers swap in the EMA weights and set eval mode). */
  sample(model: DiT): Tensor {
    const o = this.o;
    const labels = Array.from({ length: o.count }, (_, i) => i % o.numClasses);
    return sampleWithSeed(model, this.diffusion, { labels, seed: o.seed + 77, cfg: o.cfg });
  }

  /** Writes previews/step-N.png (pretrained row on top) and hands it to the sink. */
  render(model: DiT, step: number, sink?: ImageSink): string {
    fs.mkdirSync(this.dir, { recursive: true });
    const samples = this.sample(model);
    if (!this.pretrained) {
      // Step 0 of a fresh run: these samples are the pretrained model's; keep them for later grids.
      this.pretrained = samples.clone().keep();
      torch.saveSafetensors(path.join(this.dir, 'pretrained.safetensors'), { samples: this.pretrained });
    }
    const png = torch.scope(() => {
      const rows = step === 0 ? samples : torch.cat([this.pretrained!, samples], 0);
      return imageGridPng(rows, this.o.count, 2, Math.max(1, Math.floor(64 / model.config.inputSize)));
    });
    samples.dispose();
    const file = path.join(this.dir, `step-${String(step).padStart(8, '0')}.png`);
    writeFileAtomic(file, png);
    // PNG IHDR: width and height are the big-endian words at bytes 16 and 20.
    sink?.image('preview', png, png.readUInt32BE(16), png.readUInt32BE(20), step);
    return file;
  }
}
