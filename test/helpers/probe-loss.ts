// The trainer tests' yardstick: a model's mean eps-MSE on fixed inputs (images or latents) at
// timesteps spread over the chain, with fixed noise, so "the loss fell" compares like with like.
import { createDiffusion } from '../../src/diffusion/create';
import { DiT } from '../../src/models/dit';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';

export function probeLoss(model: DiT, x: Tensor, y: Tensor): number {
  const diffusion = createDiffusion({ timestepRespacing: '' });
  const g = new torch.Generator('cpu', 1234);
  return torch.noGrad(() => torch.scope(() => {
    const n = x.shape[0];
    const t = torch.tensor(Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) / n) * 1000)), { dtype: 'int64' });
    const noise = torch.randn(x.shape, { generator: g });
    const wasTraining = model.training;
    model.eval();
    const terms = diffusion.trainingLosses((xx, tt, k: { y: Tensor }) => model.forward(xx, tt, k.y), x, t, { noise, modelKwargs: { y } });
    model.train(wasTraining);
    return terms.mse!.mean().item();
  }));
}
