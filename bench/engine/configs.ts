// The bench configurations, shared by the TypeScript worker and the runner. The Python side
// (dit_step.py) holds the same table; keep them equal.
import type { DiTConfig } from '../../src/models/dit';

export interface BenchConfig {
  model: Pick<DiTConfig, 'inputSize' | 'inChannels' | 'patchSize' | 'hiddenSize' | 'depth' | 'numHeads' | 'numClasses'>;
  batch: number;
  /** Only meaningful on CUDA (too slow for the CPU bench). */
  cudaOnly?: boolean;
}

export const CONFIGS: Record<string, BenchConfig> = {
  tiny: { model: { inputSize: 28, inChannels: 1, patchSize: 4, hiddenSize: 96, depth: 4, numHeads: 4, numClasses: 10 }, batch: 64 },
  small: { model: { inputSize: 32, inChannels: 3, patchSize: 2, hiddenSize: 192, depth: 6, numHeads: 6, numClasses: 10 }, batch: 32 },
  // DiT-S/2 and DiT-B/2 on 32x32x4 latents (256x256 images), ImageNet's 1000 classes.
  'dit-s2': { model: { inputSize: 32, inChannels: 4, patchSize: 2, hiddenSize: 384, depth: 12, numHeads: 6, numClasses: 1000 }, batch: 64, cudaOnly: true },
  'dit-b2': { model: { inputSize: 32, inChannels: 4, patchSize: 2, hiddenSize: 768, depth: 12, numHeads: 12, numClasses: 1000 }, batch: 64, cudaOnly: true },
};

export type Precision = 'fp32' | 'tf32' | 'bf16';
export const PRECISIONS: Precision[] = ['fp32', 'tf32', 'bf16'];
