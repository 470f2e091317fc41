// Lays out a batch of images as one picture (torchvision's make_grid + save_image).
import * as fs from 'fs';
import { noGrad } from '../torch/autograd';
import { Tensor } from '../torch/tensor';
import { encodePng } from './png';
import { quantizeImages } from './quantize';

/**
 * images: [N, C, H, W] with C = 1 or 3, values in [-1, 1] (mapped to 0..255 as DiT's save_image with
 * normalize=True, value_range=(-1, 1)). Returns PNG bytes of a grid with `nrow` images per row.
 */
export function imageGridPng(images: Tensor, nrow = 8, padding = 2, scale = 1): Buffer {
  const [n, c] = images.shape;
  if (images.ndim !== 4 || (c !== 1 && c !== 3)) throw new RangeError(`imageGridPng: expected [N, 1|3, H, W], got [${images.shape}]`);
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`imageGridPng: scale must be a positive integer, got ${scale}`);
  const h = images.shape[2] * scale;
  const w = images.shape[3] * scale;
  const bytes = noGrad(() => {
    // Small images are enlarged by pixel repetition so they can be looked at.
    const big = scale === 1 ? images.detach() : images.detach().repeatInterleave(scale, 2).repeatInterleave(scale, 3);
    const u8 = quantizeImages(big);
    const hwc = u8.permute(0, 2, 3, 1).contiguous();
    const data = hwc.bytes();
    u8.dispose();
    hwc.dispose();
    return data;
  });
  const cols = Math.min(nrow, n);
  const rows = Math.ceil(n / cols);
  const W = cols * w + (cols + 1) * padding;
  const H = rows * h + (rows + 1) * padding;
  const out = new Uint8Array(W * H * c);
  for (let i = 0; i < n; i++) {
    const x0 = padding + (i % cols) * (w + padding);
    const y0 = padding + Math.floor(i / cols) * (h + padding);
    for (let y = 0; y < h; y++) {
      const src = (i * h + y) * w * c;
      out.set(bytes.subarray(src, src + w * c), ((y0 + y) * W + x0) * c);
    }
  }
  return encodePng(out, W, H, c as 1 | 3);
}

/** Writes the grid atomically. */
export function saveImageGrid(path: string, images: Tensor, nrow = 8, scale = 1): void {
  const tmp = `${path}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, imageGridPng(images, nrow, 2, scale));
  fs.renameSync(tmp, path);
}
