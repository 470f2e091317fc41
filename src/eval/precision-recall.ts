// Improved precision and recall (Kynkäänniemi et al. 2019): how much of each set lies on the other's k-NN manifold.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { checkFeatures, checkSameDim } from './feature-stats';

/** Rows of distances per block: a block is rows x n float64 values (1024 x 10k = 80 MB). */
const BLOCK_ROWS = 1024;

/**
 * precision: the fraction of `fake` samples that lie within the k-th nearest-neighbour radius (self
 * excluded) of at least one `real` sample; recall: the same for `real` samples against `fake`'s radii.
 * Euclidean distances in float64 on the features' device, in row blocks so that 10k x 10k sets never hold
 * a full distance matrix.
 */
export function precisionRecall(real: Tensor, fake: Tensor, o: { k?: number } = {}): { precision: number; recall: number } {
  const k = o.k ?? 3;
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`precisionRecall: k must be a positive integer, got ${k}`);
  const [nr, d] = checkFeatures(real, 'precisionRecall: real features', k + 1);
  const [nf, df] = checkFeatures(fake, 'precisionRecall: fake features', k + 1);
  checkSameDim(d, df, 'precisionRecall');
  return torch.scope(() => {
    const r = real.double();
    const f = fake.double();
    const realRadii = knnRadii(r, k);
    const fakeRadii = knnRadii(f, k);
    // One pass over the fake x real distances serves both directions.
    const fakeCovered = torch.zeros([nf], { dtype: 'bool', device: r.device });
    const realCovered = torch.zeros([nr], { dtype: 'bool', device: r.device });
    for (let start = 0; start < nf; start += BLOCK_ROWS) {
      torch.scope(() => {
        const rows = Math.min(BLOCK_ROWS, nf - start);
        const dist = squaredDistances(f.narrow(0, start, rows), r); // [rows, nr]
        fakeCovered.narrow(0, start, rows).copy_(dist.le(realRadii.unsqueeze(0)).sum(1).gt(0));
        realCovered.copy_(realCovered.logicalOr(dist.le(fakeRadii.narrow(0, start, rows).unsqueeze(1)).sum(0).gt(0)));
      });
    }
    return {
      precision: fakeCovered.double().mean().item(),
      recall: realCovered.double().mean().item(),
    };
  });
}

/** Squared distance from each row to its k-th nearest other row (index k of the sorted row, 0 being itself). */
function knnRadii(x: Tensor, k: number): Tensor {
  const n = x.size(0);
  const blocks: Tensor[] = [];
  for (let start = 0; start < n; start += BLOCK_ROWS) {
    blocks.push(torch.scope(() => {
      const dist = squaredDistances(x.narrow(0, start, Math.min(BLOCK_ROWS, n - start)), x);
      const [smallest] = dist.topk(k + 1, 1, false, true);
      return smallest.select(1, k).contiguous();
    }));
  }
  return torch.cat(blocks);
}

/**
 * ||a_i||^2 + ||b_j||^2 - 2 <a_i, b_j>, clamped at 0: one matrix product instead of an [n, m, d] difference
 * tensor. The rounding (~1e-16 of the norms) is far below the gaps between neighbour radii, and identical sets
 * give bit-identical numbers in both roles (same blocks, same products), so a sample's distance to its own copy
 * is one of the values its radius was taken from.
 */
function squaredDistances(a: Tensor, b: Tensor): Tensor {
  const na = a.square().sum(1, true);
  const nb = b.square().sum(1, true).t();
  return na.add(nb).sub(a.mm(b.t()).mul(2)).clamp(0);
}
