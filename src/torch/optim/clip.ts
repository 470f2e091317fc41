// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
import { noGrad } from '../autograd';
import { stack } from '../functions';
import { scalarLike, Tensor } from '../tensor';

/**
 * Scales all gradients so their joint norm is at most maxNorm; returns the norm before clipping.
 * maxNorm = Infinity only measures the norm (nothing to scale).
 */
export function clipGradNorm_(params: Tensor[], maxNorm: number, normType = 2): number {
  return noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    if (!grads.length) return 0;
    const norms = grads.map((g) => g.norm(normType));
    const stacked = stack(norms);
    const total = normType === Infinity ? stacked.max() : stacked.norm(normType);
    const value = total.item();
    const temps = [...grads, ...norms, stacked, total];
    if (Number.isFinite(maxNorm)) {
      const denom = total.add(1e-6);
      const limit = scalarLike(total, maxNorm);
      const coef = limit.div(denom).clamp_(null, 1);
      for (const g of grads) g.mul_(coef);
      temps.push(denom, limit, coef);
    }
    for (const t of temps) t.dispose();
    return value;
  });
}
