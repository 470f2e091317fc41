// ITU-R 601 luma with PIL's fixed-point weights (convert('L') computes
// (19595 R + 38470 G + 7471 B + 0x8000) >> 16), so rounding our value to 8 bits gives PIL's byte.
// The weights sum to exactly 1, so the formula is the same on [-1, 1] values as on 0..255 ones.
import { fromTypedArray } from '../../torch/creation';
import { Tensor } from '../../torch/tensor';
import { checkImages } from './check';

export const LUMA_WEIGHTS = [19595 / 65536, 38470 / 65536, 7471 / 65536] as const;

/** [B, 3, H, W] -> [B, 1, H, W], same scale, dtype and device. */
export function luma(images: Tensor): Tensor {
  checkImages(images, 'luma');
  const w = fromTypedArray(Float64Array.from(LUMA_WEIGHTS), [1, 3, 1, 1], { dtype: images.dtype, device: images.device });
  return images.mul(w).sum(1, true);
}
