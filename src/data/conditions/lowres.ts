// Low resolution: a box average over factor x factor blocks (what a 4x downscale with area
// resampling gives), then back to full size by repeating each block's average (nearest), so the
// condition holds exactly the low-resolution image and nothing an upsampler would invent.
// 'bilinear' (align_corners false) is available for a smoother map.
import { avgPool2d, interpolate } from '../../torch/functional';
import { scope } from '../../torch/scope';
import { Tensor } from '../../torch/tensor';

export interface LowresOptions {
  /** Downscale factor; H and W must be multiples of it. */
  factor: number;
  upsample: 'nearest' | 'bilinear';
}

export const LOWRES_DEFAULTS: LowresOptions = { factor: 4, upsample: 'nearest' };

/** [B, 3, H, W] -> [B, 3, H, W], same dtype and range. */
export function lowres(images: Tensor, o: LowresOptions): Tensor {
  const [H, W] = [images.shape[2], images.shape[3]];
  if (H % o.factor !== 0 || W % o.factor !== 0) {
    throw new RangeError(`lowres: image size ${H}x${W} is not a multiple of factor ${o.factor}`);
  }
  return scope(() => interpolate(avgPool2d(images, o.factor), { size: [H, W], mode: o.upsample }));
}
