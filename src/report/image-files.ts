// Samples as one PNG per image in a folder (what `difftune eval --samples DIR` and other FID tools
// read), named by index and class so a folder sorts in sampling order.
import * as fs from 'fs';
import * as path from 'path';
import { Tensor } from '../torch/tensor';
import { encodePng } from './png';
import { quantizeImages } from './quantize';

/** Writes images [N, C, H, W] in [-1, 1] as DIR/NNNNNN-classK.png (C 1 or 3); returns the files. */
export function saveImageFiles(dir: string, images: Tensor, labels: number[]): string[] {
  const [n, c, h, w] = images.shape;
  if (c !== 1 && c !== 3) throw new Error(`saveImageFiles: images need 1 or 3 channels, got ${c}`);
  const u8 = quantizeImages(images);
  const hwc = u8.permute(0, 2, 3, 1).contiguous().bytes();
  u8.dispose();
  const size = h * w * c;
  return Array.from({ length: n }, (_, i) => {
    const file = path.join(dir, `${String(i).padStart(6, '0')}-class${labels[i]}.png`);
    fs.writeFileSync(file, encodePng(hwc.subarray(i * size, (i + 1) * size), w, h, c as 1 | 3));
    return file;
  });
}
