// Elastic Weight Consolidation distance as a forgetting measure (the paper's Figure 5b/c): how far
// fine-tuning moved the weights that the pretrained model's own denoising loss depends on,
//   EWC = sum_i F_i (theta_i - theta0_i)^2,
// with F the diagonal empirical Fisher of the pretrained model: the mean over samples of the squared
// per-sample gradient of the training loss (eps-MSE + the learned-variance bound), at a uniform t, on
// images that stand for the source distribution (the knowledge bank, since its data is gone).
import { mulberry32 } from '../data/prng';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion';
import { DiT } from '../models/dit';
import * as torch from '../torch';
import { Tensor } from '../torch';

export interface FisherOptions {
  /** Model inputs [N, C, H, W] (pixels in [-1, 1] or latents): one per-sample gradient each per draw. */
  inputs: Tensor;
  /** A label per input (the null label for the unconditional branch). */
  labels: readonly number[];
  /** The full (unspaced) diffusion the model was trained with. */
  diffusion: GaussianDiffusion;
  /** Timestep and noise draws per input (default 1). */
  draws?: number;
  seed: number;
  onProgress?: (done: number, total: number) => void;
}

export interface DiagonalFisher {
  /** Per parameter name, float64, the parameter's shape. */
  values: Map<string, Tensor>;
  /** Per-sample gradients averaged. */
  samples: number;
}

/**
 * The diagonal empirical Fisher of `model` at its current weights. The model is run in eval mode
 * (no label dropout); its gradients are cleared afterwards and its mode restored.
 */
export function diagonalFisher(model: DiT, o: FisherOptions): DiagonalFisher {
  const [n] = o.inputs.shape;
  if (o.labels.length !== n) throw new Error(`diagonalFisher: ${n} inputs but ${o.labels.length} labels`);
  const draws = o.draws ?? 1;
  if (!Number.isInteger(draws) || draws < 1) throw new RangeError(`diagonalFisher: draws must be a positive integer, got ${draws}`);
  const params = model.namedParameters().filter(([, p]) => p.requiresGrad);
  if (params.length === 0) throw new Error('diagonalFisher: the model has no parameter that requires grad');
  const values = new Map(params.map(([name, p]) => [name, torch.zeros(p.shape, { dtype: 'float64', device: p.device })]));
  const rand = mulberry32(o.seed);
  const noiseGen = new torch.Generator('cpu', o.seed);
  const T = o.diffusion.numTimesteps;
  const wasTraining = model.training;
  model.eval();
  model.zeroGrad();
  const total = n * draws;
  try {
    for (let d = 0; d < draws; d++) {
      for (let i = 0; i < n; i++) {
        torch.scope(() => {
          const x = o.inputs.narrow(0, i, 1);
          const t = torch.tensor([Math.floor(rand() * T)], { dtype: 'int64', device: x.device });
          const y = torch.tensor([o.labels[i]], { dtype: 'int64', device: x.device });
          const noise = torch.randn(x.shape, { generator: noiseGen }).to({ device: x.device, dtype: x.dtype });
          const terms = o.diffusion.trainingLosses((xx, tt, k: { y: Tensor }) => model.forward(xx, tt, k.y), x, t, { noise, modelKwargs: { y } });
          terms.loss.mean().backward();
          for (const [name, p] of params) {
            const g = p.grad;
            if (g) {
              const g64 = g.to({ dtype: 'float64' });
              values.get(name)!.addcmul_(g64, g64);
            }
          }
        });
        model.zeroGrad();
        o.onProgress?.(d * n + i + 1, total);
      }
    }
  } catch (e) {
    for (const v of values.values()) v.dispose();
    throw e;
  } finally {
    model.zeroGrad();
    model.train(wasTraining);
  }
  for (const v of values.values()) v.div_(total);
  return { values, samples: total };
}

export interface EwcResult {
  /** sum_i F_i (theta_i - theta0_i)^2 over the parameters both models and the Fisher share. */
  total: number;
  /** Elements compared. */
  elements: number;
  /** Of those, elements whose value changed (the ones fine-tuning actually moved). */
  changed: number;
  /** total / changed: the paper's "average EWC over tunable parameters" (0 when nothing changed). */
  meanOverChanged: number;
  /** EWC per module: blocks.N, x_embedder, t_embedder, y_embedder, final_layer, ... */
  byModule: Record<string, number>;
  /** Fine-tuned parameters the Fisher has no entry for (new adapters), not counted. */
  notInFisher: string[];
  /** Fisher entries with no (or a differently shaped) fine-tuned parameter, not counted. */
  notInFinetuned: string[];
}

/** The module a parameter belongs to, for the per-module breakdown: "blocks.3", "final_layer", ... */
export function moduleOf(name: string): string {
  const parts = name.split('.');
  return parts[0] === 'blocks' && parts.length > 1 ? `${parts[0]}.${parts[1]}` : parts[0];
}

/** EWC of fine-tuned weights against pretrained ones under a diagonal Fisher (all by parameter name). */
export function ewcDistance(fisher: DiagonalFisher, pretrained: ReadonlyMap<string, Tensor>, finetuned: ReadonlyMap<string, Tensor>): EwcResult {
  let total = 0;
  let elements = 0;
  let changed = 0;
  const byModule: Record<string, number> = {};
  const notInFinetuned: string[] = [];
  for (const [name, f] of fisher.values) {
    const a = pretrained.get(name);
    const b = finetuned.get(name);
    if (!a) throw new Error(`ewcDistance: the Fisher has '${name}' but the pretrained weights do not`);
    if (!b || b.shape.join() !== a.shape.join()) {
      notInFinetuned.push(name);
      continue;
    }
    const [term, moved] = torch.noGrad(() => torch.scope(() => {
      const d = b.to({ dtype: 'float64', device: f.device }).sub(a.to({ dtype: 'float64', device: f.device }));
      return [f.mul(d.pow(2)).sum().item(), d.ne(0).sum().item()];
    }));
    total += term;
    elements += f.numel;
    changed += moved;
    const m = moduleOf(name);
    byModule[m] = (byModule[m] ?? 0) + term;
  }
  const notInFisher = [...finetuned.keys()].filter((k) => !fisher.values.has(k) && !pretrained.has(k));
  return { total, elements, changed, meanOverChanged: changed > 0 ? total / changed : 0, byModule, notInFisher, notInFinetuned };
}
