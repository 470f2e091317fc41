// Adam and AdamW with PyTorch's single-tensor update, operation for operation, so a run
// matches torch.optim bit for bit on the same inputs.
import { zerosLike } from '../creation';
import { Tensor } from '../tensor';
import { Optimizer } from './optimizer';

export interface AdamOptions {
  [k: string]: number | boolean | number[];
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
}

abstract class AdamBase extends Optimizer<AdamOptions> {
  protected abstract readonly decoupled: boolean;

  protected update(p: Tensor, grad: Tensor, st: { step: number; tensors: Map<string, Tensor> }, o: AdamOptions): void {
    const [beta1, beta2] = o.betas;
    let g = grad;
    if (o.weightDecay !== 0) {
      if (this.decoupled) p.mul_(1 - o.lr * o.weightDecay);
      else g = grad.add(p, o.weightDecay);
    }
    const expAvg = st.tensors.get('exp_avg') ?? set(st, 'exp_avg', zerosLike(p));
    const expAvgSq = st.tensors.get('exp_avg_sq') ?? set(st, 'exp_avg_sq', zerosLike(p));
    expAvg.mul_(beta1).add_(g, 1 - beta1);
    expAvgSq.mul_(beta2).addcmul_(g, g, 1 - beta2);
    const bc1 = 1 - beta1 ** st.step;
    const bc2 = 1 - beta2 ** st.step;
    const stepSize = o.lr / bc1;
    let second = expAvgSq;
    if (o.amsgrad) {
      const maxSq = st.tensors.get('max_exp_avg_sq') ?? set(st, 'max_exp_avg_sq', zerosLike(p));
      const m = maxSq.maximum(expAvgSq);
      maxSq.copy_(m);
      m.dispose();
      second = maxSq;
    }
    const denom = second.sqrt().div_(Math.sqrt(bc2)).add_(o.eps);
    p.addcdiv_(expAvg, denom, -stepSize);
    denom.dispose();
    if (g !== grad) g.dispose();
  }
}

function set(st: { tensors: Map<string, Tensor> }, name: string, t: Tensor): Tensor {
  st.tensors.set(name, t.keep());
  return t;
}

const ADAM_DEFAULTS: AdamOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false };

/** Adam (L2 weight decay added to the gradient). */
export class Adam extends AdamBase {
  protected readonly decoupled = false;
  constructor(params: ConstructorParameters<typeof Optimizer<AdamOptions>>[0], o: Partial<AdamOptions> = {}) {
    super(params, { ...ADAM_DEFAULTS, ...o } as AdamOptions);
  }
}

/** AdamW (decoupled weight decay). PyTorch's default weight decay is 0.01; DiT and Diff-Tuning use 0. */
export class AdamW extends AdamBase {
  protected readonly decoupled = true;
  constructor(params: ConstructorParameters<typeof Optimizer<AdamOptions>>[0], o: Partial<AdamOptions> = {}) {
    super(params, { ...ADAM_DEFAULTS, weightDecay: 1e-2, ...o } as AdamOptions);
  }
}
