// Exponential moving average of a model's weights (DiT's update_ema): shadow = decay * shadow +
// (1 - decay) * param after every step; sampling and evaluation use the shadow.
import { noGrad } from '../torch/autograd';
import { Module } from '../torch/nn/module';
import { Tensor } from '../torch/tensor';

export class Ema {
  /** Shadow copies under the model's state-dict names (trainable parameters only, as DiT). */
  readonly shadow = new Map<string, Tensor>();

  constructor(model: Module, readonly decay = 0.9999) {
    noGrad(() => {
      for (const [name, p] of model.namedParameters()) if (p.requiresGrad) this.shadow.set(name, p.detach().clone().keep());
    });
  }

  update(model: Module, decay = this.decay): void {
    noGrad(() => {
      for (const [name, p] of model.namedParameters()) {
        const s = this.shadow.get(name);
        if (s) s.mul_(decay).add_(p, 1 - decay);
      }
    });
  }

  /**
   * Runs fn with the averaged weights in the model (in eval mode), then puts the trained weights
   * back: sampling from the EMA without a second copy of the model.
   */
  swapInto<T>(model: Module, fn: () => T): T {
    const params = new Map(model.namedParameters());
    const saved = noGrad(() => [...this.shadow].map(([name, s]) => {
      const p = params.get(name)!;
      const copy = p.detach().clone().keep();
      p.copy_(s);
      return [p, copy] as const;
    }));
    const wasTraining = model.training;
    model.eval();
    try {
      return fn();
    } finally {
      noGrad(() => { for (const [p, copy] of saved) { p.copy_(copy); copy.dispose(); } });
      model.train(wasTraining);
    }
  }

  /** The model's state dict with the averaged weights in place of the trained ones. */
  stateDict(model: Module): Map<string, Tensor> {
    const sd = model.stateDict();
    for (const [name, s] of this.shadow) sd.set(name, s);
    return sd;
  }
}
