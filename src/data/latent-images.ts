// Model latents -> viewable images through the VAE, a batch at a time (a 256px SD decode of a
// large batch needs gigabytes of activations). Shared by `sample --vae`, `eval --vae` and the
// bank's decoded previews.
import { AutoencoderKL, decodeLatents } from '../models/vae';
import * as torch from '../torch';
import { Tensor } from '../torch';

/** latents [N, C, h, w] (any device) -> float32 images [N, 3, H, W] in [-1, 1] on the CPU. */
export function decodeLatentImages(vae: AutoencoderKL, latents: Tensor, batchSize = 8): Tensor {
  const c = vae.config.latentChannels;
  if (latents.ndim !== 4 || latents.shape[1] !== c) {
    throw new Error(`decodeLatentImages: expected latents [N, ${c}, h, w] for this VAE, got [${latents.shape.join(', ')}]`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`decodeLatentImages: batchSize must be a positive integer, got ${batchSize}`);
  const device = vae.decoder.conv_in.weight.device;
  const parts: Tensor[] = [];
  try {
    for (let s = 0; s < latents.shape[0]; s += batchSize) {
      parts.push(torch.scope(() => {
        const z = latents.slice(0, s, Math.min(s + batchSize, latents.shape[0])).to({ device, dtype: 'float32' });
        return decodeLatents(vae, z).float().clamp(-1, 1).to({ device: 'cpu' });
      }));
    }
    return torch.cat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}
