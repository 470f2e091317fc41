// A procedural, class-labelled image set that needs no files: coloured shapes on a light
// background. It gives the demo and the tests real images with learnable structure.
import { fromTypedArray } from '../torch/creation';
import { Tensor } from '../torch/tensor';
import { mulberry32 } from './prng';

export const SHAPE_CLASSES = ['square', 'disc', 'triangle', 'ring'] as const;

function inside(cls: number, dx: number, dy: number, r: number): boolean {
  switch (cls) {
    case 0: return Math.abs(dx) <= r && Math.abs(dy) <= r;
    case 1: return dx * dx + dy * dy <= r * r;
    case 2: return dy <= r && dy >= -r && Math.abs(dx) <= (dy + r) / 2;
    default: { const d = Math.sqrt(dx * dx + dy * dy); return d <= r && d >= r * 0.55; }
  }
}

/**
 * n images of size x size (RGB, values in [-1, 1], [n, 3, size, size]) with labels in
 * 0..SHAPE_CLASSES.length-1 (int64). Colour, position and radius vary per image.
 */
export function makeShapes(n: number, size = 16, seed = 0): { images: Tensor; labels: Tensor } {
  const rand = mulberry32(seed);
  const pixels = new Float32Array(n * 3 * size * size);
  const labels = new BigInt64Array(n);
  const plane = size * size;
  for (let i = 0; i < n; i++) {
    const cls = Math.floor(rand() * SHAPE_CLASSES.length);
    labels[i] = BigInt(cls);
    const colour = [rand() * 0.8, rand() * 0.8, rand() * 0.8];
    const r = size * (0.22 + rand() * 0.12);
    const cx = r + rand() * (size - 2 * r);
    const cy = r + rand() * (size - 2 * r);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const on = inside(cls, x + 0.5 - cx, y + 0.5 - cy, r);
        for (let c = 0; c < 3; c++) {
          const v = on ? colour[c] : 0.95;
          pixels[i * 3 * plane + c * plane + y * size + x] = v * 2 - 1;
        }
      }
    }
  }
  return { images: fromTypedArray(pixels, [n, 3, size, size]), labels: fromTypedArray(labels) };
}
