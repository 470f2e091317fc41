// Float images in [-1, 1] to the uint8 pixels a saved PNG holds, with torchvision save_image's
// rounding (x * 127.5 + 128, clamped, truncated) — one rule for grids, banks and the gate.
import { noGrad } from '../torch/autograd';
import { scope } from '../torch/scope';
import { Tensor } from '../torch/tensor';

/** [N, C, H, W] floats in [-1, 1] -> uint8 [N, C, H, W] on the CPU. */
export function quantizeImages(x: Tensor): Tensor {
  return scope(() => noGrad(() => x.float().clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255).to({ dtype: 'uint8', device: 'cpu' })));
}
