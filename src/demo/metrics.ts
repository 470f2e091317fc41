// FID and KID of each method's samples against the held-out target images, through one feature
// extractor. The reference features are computed once per demo run (a few thousand 32x32 images
// take seconds) rather than through the global statistics cache, because the held-out set is
// specific to the demo's training subset.
import { decodeImageFiles } from '../eval/reference-stats';
import { extractFeatures, ProbeExtractor, toUint8Images } from '../eval/forgetting';
import { featureStats, FeatureStats } from '../eval/feature-stats';
import { frechetDistance } from '../eval/frechet';
import { kid } from '../eval/kid';
import * as torch from '../torch';
import { Tensor } from '../torch';

/** A feature extractor the demo can use (and free when it made it). */
export type DemoExtractor = ProbeExtractor & { dispose?: () => void; weightsFile?: string; weightsHash?: string };

export interface Reference {
  stats: FeatureStats;
  /** float [n, dim] (kept; dispose() frees it). */
  features: Tensor;
  count: number;
  /** Side the images were decoded at. */
  resolution: number;
  dispose(): void;
}

/** Features and their statistics of image files decoded at `resolution` (the samples' size). */
export async function referenceFromFiles(extractor: ProbeExtractor, files: string[], resolution: number): Promise<Reference> {
  const images = await decodeImageFiles(files, resolution);
  let features: Tensor;
  try {
    features = extractFeatures(extractor, images).keep();
  } finally {
    images.dispose();
  }
  const stats = featureStats(features);
  return { stats, features, count: files.length, resolution, dispose: () => features.dispose() };
}

export interface SampleMetrics {
  fid: number;
  kid: number;
  kidStd: number;
  n: number;
}

/** FID and KID (100 subsets of min(1000, n, n_ref) rows, seeded) of float samples in [-1, 1]. */
export function sampleMetrics(extractor: ProbeExtractor, samples: Tensor, ref: Reference, seed: number): SampleMetrics {
  const features = torch.scope(() => extractFeatures(extractor, toUint8Images(samples))).keep();
  try {
    const fid = frechetDistance(featureStats(features), ref.stats);
    const subsetSize = Math.min(1000, features.shape[0], ref.features.shape[0]);
    const k = kid(features, ref.features, { subsets: 100, subsetSize, seed, warn: () => undefined });
    return { fid, kid: k.mean, kidStd: k.std, n: features.shape[0] };
  } finally {
    features.dispose();
  }
}

/** The paper's relative promotion of a method over full fine-tuning: (FID_full - FID_method) / FID_full. */
export function relativePromotion(fidFull: number, fidMethod: number): number {
  if (!(fidFull > 0)) return NaN;
  return (fidFull - fidMethod) / fidFull;
}
