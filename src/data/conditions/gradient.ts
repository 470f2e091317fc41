// The first stages of Canny, shared by the canny and sketch conditions: luma in [0, 1], Gaussian
// blur, Sobel gradients and non-maximum suppression over 4 directions, giving a one-pixel-thin
// gradient magnitude. Borders are padded by replication, so an image's frame is never an edge.
import { fromTypedArray } from '../../torch/creation';
import { where } from '../../torch/functions';
import { conv2d, pad } from '../../torch/functional';
import { aten } from '../../torch/aten';
import { Tensor } from '../../torch/tensor';
import { luma } from './grayscale';

const replicationPad = aten('replication_pad2d');

function padEdges(x: Tensor, r: number): Tensor {
  return new Tensor(replicationPad(x.h, [r, r, r, r]));
}

/** A [1, 1, kh, kw] kernel on x's dtype and device. */
function kernel(values: number[], kh: number, kw: number, like: Tensor): Tensor {
  return fromTypedArray(Float64Array.from(values), [1, 1, kh, kw], { dtype: like.dtype, device: like.device });
}

/** Separable Gaussian blur of [B, 1, H, W]; radius ceil(3 sigma); sigma 0 returns x. */
export function gaussianBlur(x: Tensor, sigma: number): Tensor {
  if (sigma === 0) return x;
  const r = Math.max(1, Math.ceil(3 * sigma));
  const taps = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const total = taps.reduce((a, b) => a + b, 0);
  const k = taps.map((t) => t / total);
  const rows = conv2d(padEdges(x, r), kernel(k, 1, 2 * r + 1, x));
  return conv2d(rows, kernel(k, 2 * r + 1, 1, x));
}

// Sobel divided by 4: a hard step of contrast c gives a magnitude of c.
const SOBEL_X = [-1, 0, 1, -2, 0, 2, -1, 0, 1].map((v) => v / 4);
const SOBEL_Y = [-1, -2, -1, 0, 0, 0, 1, 2, 1].map((v) => v / 4);
const TAN_22_5 = Math.SQRT2 - 1;
const TAN_67_5 = Math.SQRT2 + 1;
// Magnitudes are rounded to this grid: mirror-image pixels either side of an edge have equal
// magnitudes in exact arithmetic, and the rounding makes them tie exactly, so the tie rule below
// (keep the pixel on the bright side) decides instead of float noise.
const MAGNITUDE_GRID = 4096;

/**
 * [B, 3, H, W] in [-1, 1] -> [B, 1, H, W]: the gradient magnitude of the blurred luma (luma in
 * [0, 1]) where it is a local maximum across the edge (the gradient direction quantised to 0,
 * 45, 90 or 135 degrees), 0 elsewhere. Edges lie on the bright side of a step, so the map of a
 * mirrored image is the mirrored map.
 */
export function thinGradient(images: Tensor, sigma: number): Tensor {
  const grey = gaussianBlur(luma(images).add(1).div(2), sigma);
  const padded = padEdges(grey, 1);
  const gx = conv2d(padded, kernel(SOBEL_X, 3, 3, grey));
  const gy = conv2d(padded, kernel(SOBEL_Y, 3, 3, grey));
  const m = gx.square().add(gy.square()).sqrt().mul(MAGNITUDE_GRID).round().div(MAGNITUDE_GRID);

  const [H, W] = [m.shape[2], m.shape[3]];
  const mp = pad(m, [1, 1, 1, 1]); // outside the image: magnitude 0
  const at = (dy: number, dx: number) => mp.slice(2, 1 + dy, 1 + dy + H).slice(3, 1 + dx, 1 + dx + W);
  const ax = gx.abs();
  const ay = gy.abs();
  const horizontal = ay.le(ax.mul(TAN_22_5));
  const vertical = ay.gt(ax.mul(TAN_67_5));
  const diagonal = gx.mul(gy).gt(0); // along (1, 1) in (y, x), y growing downwards; else along (1, -1)
  // The neighbour the gradient points to (brighter side) must be strictly lower, the other one
  // not higher: of two tied pixels across an edge, the one on the bright side is kept.
  const peak = (dy: number, dx: number, towardsPlus: Tensor) => {
    const plus = at(dy, dx);
    const minus = at(-dy, -dx);
    return m.gt(where(towardsPlus, plus, minus)).logicalAnd(m.ge(where(towardsPlus, minus, plus)));
  };
  const keep = where(horizontal, peak(0, 1, gx.gt(0)),
    where(vertical, peak(1, 0, gy.gt(0)),
      where(diagonal, peak(1, 1, gy.gt(0)), peak(1, -1, gy.gt(0)))));
  return where(keep, m, 0);
}
