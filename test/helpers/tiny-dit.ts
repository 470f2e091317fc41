// A tiny 8x8 RGB DiT with every weight random, and the denoiser view of it, for the forgetting probes' tests.
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { DiT } from '../../src/models/dit';

/** Every weight random: the official init zeroes the output layer, so all models would agree. */
export function tinyDiT(numClasses: number, seed: number): DiT {
  torch.manualSeed(seed);
  const m = new DiT({ inputSize: 8, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 1, numHeads: 2, numClasses });
  torch.noGrad(() => {
    for (const [key, p] of m.namedParameters()) if (key !== 'pos_embed') p.normal_(0, 0.2);
  });
  return m.eval();
}

/** The model as a ConditionalDenoiser (null label = numClasses). */
export const asDenoiser = (m: DiT) => ({ forward: (x: Tensor, t: Tensor, y: Tensor) => m.forward(x, t, y), numClasses: m.config.numClasses, nullLabel: m.config.numClasses });
