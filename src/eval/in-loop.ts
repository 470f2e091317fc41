// FID during training: every N steps the trainer samples n images and compares them with the
// target's reference statistics (computed once, e.g. by referenceStats, before training starts).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { sampleCountWarning } from './evaluate';
import { FeatureExtractor } from './extractor';
import { FeatureStats, featureStats } from './feature-stats';
import { frechetDistance } from './frechet';

export interface InLoopEvalOptions {
  /** Draws k new samples as uint8 [k, 3, H, W]; called with k <= batchSize until n are drawn. The caller's tensors are freed here. */
  sample: (k: number) => Tensor;
  refStats: FeatureStats;
  extractor: FeatureExtractor;
  /** Samples per evaluation. */
  n: number;
  /** Samples per sample() call (default n: one call). */
  batchSize?: number;
  /** Where the small-n warning goes (default console.warn); it is given once per process and (extractor, n). */
  warn?: (message: string) => void;
}

const warned = new Set<string>();

/** FID of n fresh samples against refStats; `name` is the metric's name (fid_<extractor>). */
export function inLoopEval(o: InLoopEvalOptions): { fid: number; name: string; n: number } {
  const { n, extractor } = o;
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`inLoopEval: n must be an integer >= 2, got ${n}`);
  const batchSize = o.batchSize ?? n;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`inLoopEval: batchSize must be a positive integer, got ${batchSize}`);
  if (o.refStats.dim !== extractor.dim) {
    throw new RangeError(`inLoopEval: the reference statistics have dimension ${o.refStats.dim}, the ${extractor.name} extractor ${extractor.dim}`);
  }
  const name = `fid_${extractor.name}`;
  const message = sampleCountWarning(n, extractor.dim, `in-loop ${name}`);
  if (message && !warned.has(`${name}/${n}`)) {
    warned.add(`${name}/${n}`);
    (o.warn ?? console.warn)(`warning: ${message}`);
  }
  const parts: Tensor[] = [];
  try {
    for (let done = 0; done < n;) {
      const k = Math.min(batchSize, n - done);
      const images = torch.noGrad(() => o.sample(k));
      try {
        if (!(images instanceof Tensor) || images.dtype !== 'uint8' || images.ndim !== 4 || images.shape[0] !== k) {
          const got = images instanceof Tensor ? `${images.dtype} [${images.shape.join(', ')}]` : typeof images;
          throw new TypeError(`inLoopEval: sample(${k}) must return uint8 [${k}, 3, H, W], got ${got}`);
        }
        parts.push(extractor.features(images));
      } finally {
        images.dispose?.();
      }
      done += k;
    }
    const fid = torch.scope(() => {
      const all = parts.length === 1 ? parts[0] : torch.cat(parts, 0);
      return frechetDistance(featureStats(all), o.refStats);
    });
    return { fid, name, n };
  } finally {
    for (const p of parts) p.dispose();
  }
}
