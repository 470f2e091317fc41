// The benchmark's evaluation protocol: n class-conditional samples of a model (DDIM, eta 0, with
// classifier-free guidance), labels in the class proportions of the target's eval split, noise
// from the run's seed; FID and KID of those samples against the eval split through the extractor.
// The same seed gives every method the same starting noise and labels: paired comparisons.
import { hashSeed } from '../../src/data/batch-iterator';
import { createDiffusion } from '../../src/diffusion/create';
import { evaluateSamples } from '../../src/eval/evaluate';
import { FeatureExtractor } from '../../src/eval/extractor';
import { proportionalLabels } from '../../src/eval/forgetting';
import { ReferenceSpec, splitFiles } from '../../src/eval/reference-stats';
import { DiT } from '../../src/models/dit';
import * as torch from '../../src/torch';
import { Device, Tensor } from '../../src/torch';
import { sampleDiT } from '../../src/tuning/bank';

const EVAL_NOISE_STREAM = 21;
/** The label order's seed: fixed, so every run samples the same label multiset in the same order. */
const EVAL_LABEL_SEED = 0;

export interface SamplingProtocol {
  samples: number;
  /** DDIM steps. */
  steps: number;
  cfg: number;
  batch: number;
  device: Device;
}

/** The labels every run of a target samples: n in the eval split's class proportions. */
export function evalLabels(ref: ReferenceSpec, n: number): number[] {
  return proportionalLabels(splitFiles(ref).labels, n, EVAL_LABEL_SEED);
}

/** n samples as float32 [n, C, H, W] in [-1, 1] on the CPU; the model must be in eval mode (e.g. inside Ema.swapInto). */
export function sampleModel(model: DiT, labels: readonly number[], seed: number, p: SamplingProtocol): Tensor {
  const c = model.config;
  const n = labels.length;
  const diffusion = createDiffusion({ timestepRespacing: String(p.steps), learnSigma: c.learnSigma });
  // All starting noise at once: the samples do not depend on the batch size.
  const noise = torch.randn([n, c.inChannels, c.inputSize, c.inputSize], { generator: new torch.Generator('cpu', hashSeed(seed, EVAL_NOISE_STREAM)) });
  const parts: Tensor[] = [];
  try {
    for (let start = 0; start < n; start += p.batch) {
      const rows = Math.min(p.batch, n - start);
      parts.push(torch.scope(() => sampleDiT(model, diffusion, {
        labels: torch.tensor(labels.slice(start, start + rows), { dtype: 'int64', device: p.device }),
        noise: noise.narrow(0, start, rows).to({ device: p.device }),
        cfg: p.cfg, guideChannels: 3, sampler: 'ddim', eta: 0, clip: true, device: p.device,
      }).to({ device: 'cpu', dtype: 'float32' })));
    }
    return parts.length === 1 ? parts.pop()! : torch.cat(parts, 0);
  } finally {
    for (const t of parts) t.dispose();
    noise.dispose();
    diffusion.dispose();
  }
}

export interface FidResult {
  metric: string;
  fid: number;
  kid: number;
  kidStd: number;
  samples: number;
  refImages: number;
  warnings: string[];
}

/** FID/KID of samples (float [-1, 1] or uint8) against the reference split; the samples are freed. */
export async function fidOfSamples(samples: Tensor, ref: ReferenceSpec, extractor: FeatureExtractor, log: (m: string) => void): Promise<FidResult> {
  const warnings: string[] = [];
  try {
    const m = await evaluateSamples({ samples, ref, extractor, log, warn: (w) => warnings.push(w) });
    const name = extractor.name;
    const fid = m[`fid_${name}`];
    const kid = m[`kid_${name}`];
    const kidStd = m[`kid_${name}_std`];
    if (typeof fid !== 'number' || typeof kid !== 'number' || typeof kidStd !== 'number') {
      throw new Error(`evaluation returned no fid_${name} / kid_${name}`);
    }
    return { metric: `fid_${name}`, fid, kid, kidStd, samples: Number(m.n), refImages: Number(m.n_ref), warnings };
  } finally {
    samples.dispose();
  }
}
