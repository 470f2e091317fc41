// Segmentation: colour-quantised regions by k-means in RGB, per image. Deterministic
// farthest-point initialisation (the first centre is the pixel farthest from the image's mean
// colour, each next one the pixel farthest from the centres so far; ties go to the first pixel in
// raster order), then a fixed number of Lloyd iterations; each pixel is replaced by the mean
// colour of its cluster. An image with at most k distinct colours is reproduced exactly, because
// the initialisation picks every one of them.
import { arange } from '../../torch/creation';
import { cat, where } from '../../torch/functions';
import { scope } from '../../torch/scope';
import { Tensor } from '../../torch/tensor';

export interface SegmentationOptions {
  /** Number of colour clusters (k). */
  clusters: number;
  /** Lloyd iterations after the initialisation. */
  iterations: number;
}

export const SEGMENTATION_DEFAULTS: SegmentationOptions = { clusters: 8, iterations: 10 };

/**
 * Squared RGB distance of each pixel [B, N, 3] to each centre [B, k, 3], up to the pixel's own
 * |p|^2 (the same for every centre, so argmin is unchanged): |c|^2 - 2 p.c, [B, N, k]. A batched
 * matrix product, not an [B, N, k, 3] difference tensor.
 */
function distances(px: Tensor, centres: Tensor): Tensor {
  return centres.square().sum(2).unsqueeze(1).baddbmm(px, centres.transpose(1, 2), 1, -2);
}

/** Mean colour of each cluster; a cluster that lost all its pixels keeps its centre. */
function clusterMeans(px: Tensor, assignment: Tensor, centres: Tensor): Tensor {
  const k = centres.shape[1];
  const onehot = assignment.unsqueeze(2).eq(arange(k, undefined, 1, { device: px.device })).to({ dtype: px.dtype }); // [B, N, k]
  const sums = onehot.transpose(1, 2).bmm(px); // [B, k, 3]
  const counts = onehot.sum(1).unsqueeze(2); // [B, k, 1]
  return where(counts.gt(0), sums.div(counts.clamp(1)), centres);
}

/** [B, 3, H, W] -> [B, 3, H, W]: every pixel replaced by its colour cluster's mean. */
export function segmentColours(images: Tensor, o: SegmentationOptions): Tensor {
  return scope(() => {
    const [B, , H, W] = images.shape;
    const px = images.flatten(2).transpose(1, 2).contiguous(); // [B, N, 3]
    const pick = (idx: Tensor) => px.gather(1, idx.view(B, 1, 1).expand(B, 1, 3)); // [B, 1, 3]
    const picked: Tensor[] = [];
    let nearest = px.sub(px.mean(1, true)).square().sum(2); // [B, N]
    for (let j = 0; j < o.clusters; j++) {
      const c = pick(nearest.argmax(1));
      picked.push(c);
      const d = px.sub(c).square().sum(2);
      nearest = j === 0 ? d : nearest.minimum(d);
    }
    let centres = cat(picked, 1);
    for (let i = 0; i < o.iterations; i++) {
      const prev = centres;
      centres = scope(() => clusterMeans(px, distances(px, prev).argmin(2), prev));
    }
    const assignment = distances(px, centres).argmin(2); // [B, N]
    const colours = clusterMeans(px, assignment, centres);
    const out = colours.gather(1, assignment.unsqueeze(2).expand(B, H * W, 3));
    return out.transpose(1, 2).reshape(B, 3, H, W);
  });
}
