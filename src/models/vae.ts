// The Stable Diffusion VAE: diffusers' AutoencoderKL (Encoder, DiagonalGaussianDistribution,
// Decoder), written from its published architecture with diffusers' module and parameter names
// (encoder.down_blocks.0.resnets.0.norm1.weight, decoder.mid_block.attentions.0.to_q.weight, ...),
// so `diffusion_pytorch_model.safetensors` loads one to one. ldm-layout checkpoints are renamed
// by src/models/vae-io.ts. Images are in [-1, 1]; latents are unscaled until encodeLatents.
import * as torch from '../torch';
import { Generator, Tensor } from '../torch';
import type { DType } from '../torch';

const { nn, F } = torch;

/** What DiT's latent space expects: z = scalingFactor * sample (SD 1.x/2.x VAEs, sd-vae-ft-ema/mse). */
export const VAE_SCALING_FACTOR = 0.18215;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/** diffusers' AutoencoderKL constructor arguments (camelCased), restricted to the SD family. */
export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  /** Channels of each resolution level; one down block (and one up block) per entry. */
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  sampleSize: number;
  scalingFactor: number;
  /** SD3/Flux VAEs shift latents before scaling: z = (sample - shift) * scale. null for SD 1.x/2.x. */
  shiftFactor: number | null;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
}

/** stabilityai/sd-vae-ft-ema (and every SD 1.x/2.x VAE): the ldm v1-inference first_stage_config. */
export const SD_VAE_CONFIG: Readonly<VaeConfig> = Object.freeze({
  inChannels: 3,
  outChannels: 3,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  latentChannels: 4,
  normNumGroups: 32,
  sampleSize: 256,
  scalingFactor: VAE_SCALING_FACTOR,
  shiftFactor: null,
  useQuantConv: true,
  usePostQuantConv: true,
  midBlockAddAttention: true,
});

export function vaeConfig(overrides: Partial<VaeConfig> = {}): VaeConfig {
  return { ...SD_VAE_CONFIG, blockOutChannels: [...SD_VAE_CONFIG.blockOutChannels], ...overrides };
}

function validate(c: VaeConfig): void {
  const ints: (keyof VaeConfig)[] = ['inChannels', 'outChannels', 'layersPerBlock', 'latentChannels', 'normNumGroups'];
  for (const k of ints) {
    if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new Error(`VAE: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (!Array.isArray(c.blockOutChannels) || c.blockOutChannels.length === 0) {
    throw new Error('VAE: blockOutChannels must be a non-empty list of channel counts');
  }
  for (const ch of c.blockOutChannels) {
    if (!Number.isInteger(ch) || ch <= 0 || ch % c.normNumGroups) {
      throw new Error(`VAE: blockOutChannels entry ${ch} must be a positive multiple of normNumGroups ${c.normNumGroups}`);
    }
  }
  if (!(c.scalingFactor > 0)) throw new Error(`VAE: scalingFactor must be positive, got ${c.scalingFactor}`);
}

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

const GROUP_NORM_EPS = 1e-6;

/** GroupNorm -> SiLU -> conv, twice, plus a (1x1-projected when channels change) skip: ResnetBlock2D without time embedding. */
export class ResnetBlock2D extends nn.Module {
  readonly norm1: torch.nn.GroupNorm;
  readonly conv1: torch.nn.Conv2d;
  readonly norm2: torch.nn.GroupNorm;
  readonly conv2: torch.nn.Conv2d;
  readonly conv_shortcut: torch.nn.Conv2d | null;
  constructor(readonly inChannels: number, readonly outChannels: number, groups: number) {
    super();
    this.norm1 = this.registerModule('norm1', new nn.GroupNorm(groups, inChannels, GROUP_NORM_EPS));
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(inChannels, outChannels, 3, { padding: 1 }));
    this.norm2 = this.registerModule('norm2', new nn.GroupNorm(groups, outChannels, GROUP_NORM_EPS));
    this.conv2 = this.registerModule('conv2', new nn.Conv2d(outChannels, outChannels, 3, { padding: 1 }));
    this.conv_shortcut = inChannels !== outChannels
      ? this.registerModule('conv_shortcut', new nn.Conv2d(inChannels, outChannels, 1))
      : null;
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.conv1.forward(F.silu(this.norm1.forward(x)));
      h = this.conv2.forward(F.silu(this.norm2.forward(h)));
      const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
      return skip.add(h);
    });
  }
}

/**
 * The mid-block self-attention: GroupNorm, then single-head attention over the H*W positions
 * with Linear q/k/v/out (diffusers' Attention with residual connection, rescale factor 1).
 */
export class VaeAttention extends nn.Module {
  readonly group_norm: torch.nn.GroupNorm;
  readonly to_q: torch.nn.Linear;
  readonly to_k: torch.nn.Linear;
  readonly to_v: torch.nn.Linear;
  /** diffusers' to_out is [Linear, Dropout]; only the Linear carries weights. */
  readonly to_out: torch.nn.ModuleList<torch.nn.Linear>;
  constructor(readonly channels: number, groups: number) {
    super();
    this.group_norm = this.registerModule('group_norm', new nn.GroupNorm(groups, channels, GROUP_NORM_EPS));
    this.to_q = this.registerModule('to_q', new nn.Linear(channels, channels));
    this.to_k = this.registerModule('to_k', new nn.Linear(channels, channels));
    this.to_v = this.registerModule('to_v', new nn.Linear(channels, channels));
    this.to_out = this.registerModule('to_out', new nn.ModuleList([new nn.Linear(channels, channels)]));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      const [b, c, h, w] = x.shape;
      const tokens = this.group_norm.forward(x).view(b, c, h * w).transpose(1, 2); // [B, HW, C]
      // One head: [B, 1, HW, C]. Scale 1/sqrt(C) is the default of scaledDotProductAttention.
      const q = this.to_q.forward(tokens).unsqueeze(1);
      const k = this.to_k.forward(tokens).unsqueeze(1);
      const v = this.to_v.forward(tokens).unsqueeze(1);
      const attended = attention(q, k, v).squeeze(1);
      const out = this.to_out.at(0).forward(attended).transpose(1, 2).reshape(b, c, h, w);
      return out.add(x);
    });
  }
}

/**
 * Softmax attention. Half-precision scores are softmaxed in float32 as diffusers does
 * (upcast_softmax); float32 and float64 stay in their own precision (float64 is the exact check).
 */
function attention(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const half = q.dtype === 'float16' || q.dtype === 'bfloat16';
  if (!half || F.hasFusedAttention()) return F.scaledDotProductAttention(q, k, v);
  return torch.scope(() => {
    const scores = q.float().matmul(k.float().transpose(-2, -1)).mul(1 / Math.sqrt(q.size(-1)));
    return F.softmax(scores, -1).to(q.dtype).matmul(v);
  });
}

/** Pads right and bottom by one, then a stride-2 3x3 conv (diffusers' Downsample2D with padding=0). */
export class Downsample2D extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(channels, channels, 3, { stride: 2, padding: 0 }));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.conv.forward(F.pad(x, [0, 1, 0, 1])));
  }
}

/** Nearest-neighbour x2, then a 3x3 conv (diffusers' Upsample2D with use_conv). */
export class Upsample2D extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(channels, channels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      // Old libtorch has no bfloat16 nearest upsampling: diffusers goes through float32 too.
      const input = x.dtype === 'bfloat16' ? x.float() : x;
      let up = F.interpolate(input, { scaleFactor: 2, mode: 'nearest' });
      if (up.dtype !== x.dtype) up = up.to(x.dtype);
      return this.conv.forward(up);
    });
  }
}

/** Resnets, then an optional downsampler: DownEncoderBlock2D. */
export class DownEncoderBlock2D extends nn.Module {
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly downsamplers: torch.nn.ModuleList<Downsample2D> | null;
  constructor(inChannels: number, outChannels: number, layers: number, groups: number, addDownsample: boolean) {
    super();
    this.resnets = this.registerModule('resnets', new nn.ModuleList(
      Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, groups))));
    this.downsamplers = addDownsample
      ? this.registerModule('downsamplers', new nn.ModuleList([new Downsample2D(outChannels)]))
      : null;
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      let h = x;
      for (const r of this.resnets) h = r.forward(h);
      if (this.downsamplers) h = this.downsamplers.at(0).forward(h);
      return h;
    });
  }
}

/** Resnets, then an optional upsampler: UpDecoderBlock2D. */
export class UpDecoderBlock2D extends nn.Module {
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly upsamplers: torch.nn.ModuleList<Upsample2D> | null;
  constructor(inChannels: number, outChannels: number, layers: number, groups: number, addUpsample: boolean) {
    super();
    this.resnets = this.registerModule('resnets', new nn.ModuleList(
      Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, groups))));
    this.upsamplers = addUpsample
      ? this.registerModule('upsamplers', new nn.ModuleList([new Upsample2D(outChannels)]))
      : null;
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      let h = x;
      for (const r of this.resnets) h = r.forward(h);
      if (this.upsamplers) h = this.upsamplers.at(0).forward(h);
      return h;
    });
  }
}

/** resnet, attention, resnet at the lowest resolution (UNetMidBlock2D without time embedding). */
export class UNetMidBlock2D extends nn.Module {
  // diffusers registers attentions before resnets: that is the state_dict order.
  readonly attentions: torch.nn.ModuleList<VaeAttention> | null;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  constructor(channels: number, groups: number, addAttention: boolean) {
    super();
    this.attentions = addAttention
      ? this.registerModule('attentions', new nn.ModuleList([new VaeAttention(channels, groups)]))
      : null;
    this.resnets = this.registerModule('resnets', new nn.ModuleList([
      new ResnetBlock2D(channels, channels, groups), new ResnetBlock2D(channels, channels, groups)]));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.resnets.at(0).forward(x);
      if (this.attentions) h = this.attentions.at(0).forward(h);
      return this.resnets.at(1).forward(h);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Encoder, decoder, latent distribution
// ---------------------------------------------------------------------------------------------

export class VaeEncoder extends nn.Module {
  readonly conv_in: torch.nn.Conv2d;
  readonly down_blocks: torch.nn.ModuleList<DownEncoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: torch.nn.GroupNorm;
  readonly conv_out: torch.nn.Conv2d;
  constructor(c: VaeConfig) {
    super();
    const ch = c.blockOutChannels;
    const groups = c.normNumGroups;
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.inChannels, ch[0], 3, { padding: 1 }));
    this.down_blocks = this.registerModule('down_blocks', new nn.ModuleList(ch.map((out, i) =>
      new DownEncoderBlock2D(i === 0 ? ch[0] : ch[i - 1], out, c.layersPerBlock, groups, i < ch.length - 1))));
    const top = ch[ch.length - 1];
    this.mid_block = this.registerModule('mid_block', new UNetMidBlock2D(top, groups, c.midBlockAddAttention));
    this.conv_norm_out = this.registerModule('conv_norm_out', new nn.GroupNorm(groups, top, GROUP_NORM_EPS));
    // double_z: the mean and log-variance of every latent channel.
    this.conv_out = this.registerModule('conv_out', new nn.Conv2d(top, 2 * c.latentChannels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.conv_in.forward(x);
      for (const block of this.down_blocks) h = block.forward(h);
      h = this.mid_block.forward(h);
      return this.conv_out.forward(F.silu(this.conv_norm_out.forward(h)));
    });
  }
}

export class VaeDecoder extends nn.Module {
  readonly conv_in: torch.nn.Conv2d;
  readonly up_blocks: torch.nn.ModuleList<UpDecoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: torch.nn.GroupNorm;
  readonly conv_out: torch.nn.Conv2d;
  constructor(c: VaeConfig) {
    super();
    const reversed = [...c.blockOutChannels].reverse();
    const groups = c.normNumGroups;
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.latentChannels, reversed[0], 3, { padding: 1 }));
    // diffusers registers up_blocks before mid_block (state_dict order), though mid_block runs first.
    this.up_blocks = this.registerModule('up_blocks', new nn.ModuleList(reversed.map((out, i) =>
      new UpDecoderBlock2D(i === 0 ? reversed[0] : reversed[i - 1], out, c.layersPerBlock + 1, groups, i < reversed.length - 1))));
    this.mid_block = this.registerModule('mid_block', new UNetMidBlock2D(reversed[0], groups, c.midBlockAddAttention));
    const last = reversed[reversed.length - 1];
    this.conv_norm_out = this.registerModule('conv_norm_out', new nn.GroupNorm(groups, last, GROUP_NORM_EPS));
    this.conv_out = this.registerModule('conv_out', new nn.Conv2d(last, c.outChannels, 3, { padding: 1 }));
  }
  forward(z: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.conv_in.forward(z);
      h = this.mid_block.forward(h);
      for (const block of this.up_blocks) h = block.forward(h);
      return this.conv_out.forward(F.silu(this.conv_norm_out.forward(h)));
    });
  }
}

/**
 * The encoder's posterior N(mean, exp(logvar)) per latent element (diffusers'
 * DiagonalGaussianDistribution). Owns its tensors: dispose() when done.
 */
export class DiagonalGaussian {
  readonly mean: Tensor;
  /** Clamped to [-30, 20] as diffusers does. */
  readonly logvar: Tensor;
  readonly std: Tensor;
  constructor(readonly parameters: Tensor) {
    const [mean, logvar] = torch.scope(() => {
      const [m, lv] = parameters.chunk(2, 1);
      return [m.contiguous(), lv.clamp(-30, 20)];
    });
    this.mean = mean;
    this.logvar = logvar;
    this.std = torch.scope(() => logvar.mul(0.5).exp());
  }
  /** mean + std * eps, eps ~ N(0, I) drawn on the generator's device (CPU by default) as diffusers' randn_tensor. */
  sample(generator?: Generator): Tensor {
    return torch.scope(() => {
      const device = generator?.device ?? this.mean.device;
      let eps = torch.randn(this.mean.shape, { generator, dtype: this.mean.dtype, device });
      if (eps.device !== this.mean.device) eps = eps.to({ device: this.mean.device });
      return this.mean.add(this.std.mul(eps));
    });
  }
  /** The most likely latent: the mean (a copy the caller owns). */
  mode(): Tensor {
    return this.mean.clone();
  }
  /** Marks every tensor as outliving scopes (as Tensor.keep). */
  keep(): this {
    for (const t of [this.parameters, this.mean, this.logvar, this.std]) t.keep();
    return this;
  }
  dispose(): void {
    for (const t of [this.parameters, this.mean, this.logvar, this.std]) t.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// AutoencoderKL
// ---------------------------------------------------------------------------------------------

export class AutoencoderKL extends nn.Module {
  readonly config: Readonly<VaeConfig>;
  readonly encoder: VaeEncoder;
  readonly decoder: VaeDecoder;
  readonly quant_conv: torch.nn.Conv2d | null;
  readonly post_quant_conv: torch.nn.Conv2d | null;
  constructor(config: Partial<VaeConfig> = {}) {
    super();
    const c = vaeConfig(config);
    validate(c);
    this.config = Object.freeze({ ...c, blockOutChannels: Object.freeze([...c.blockOutChannels]) as number[] });
    this.encoder = this.registerModule('encoder', new VaeEncoder(c));
    this.decoder = this.registerModule('decoder', new VaeDecoder(c));
    const latent = c.latentChannels;
    this.quant_conv = c.useQuantConv ? this.registerModule('quant_conv', new nn.Conv2d(2 * latent, 2 * latent, 1)) : null;
    this.post_quant_conv = c.usePostQuantConv ? this.registerModule('post_quant_conv', new nn.Conv2d(latent, latent, 1)) : null;
    this.eval();
  }

  /** The spatial downsampling factor (8 for SD). */
  get downsampleFactor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** dtype of the weights (inputs are cast to it). */
  get dtype(): DType {
    return this.encoder.conv_in.weight.dtype;
  }

  /** Images [N, C, H, W] in [-1, 1] -> the posterior over unscaled latents [N, latent, H/8, W/8]. */
  encode(x: Tensor): DiagonalGaussian {
    this.checkInput(x, this.config.inChannels, 'encode');
    const moments = torch.scope(() => {
      const h = this.encoder.forward(x.dtype === this.dtype ? x : x.to(this.dtype));
      return this.quant_conv ? this.quant_conv.forward(h) : h;
    });
    return new DiagonalGaussian(moments);
  }

  /** Unscaled latents -> images (about [-1, 1], not clamped). */
  decode(z: Tensor): Tensor {
    this.checkInput(z, this.config.latentChannels, 'decode');
    return torch.scope(() => {
      let h = z.dtype === this.dtype ? z : z.to(this.dtype);
      if (this.post_quant_conv) h = this.post_quant_conv.forward(h);
      return this.decoder.forward(h);
    });
  }

  /** encode then decode the posterior's mode (diffusers' forward with sample_posterior=False). */
  forward(x: Tensor): Tensor {
    const dist = this.encode(x);
    try {
      return torch.scope(() => this.decode(dist.mean));
    } finally {
      dist.dispose();
    }
  }

  private checkInput(x: Tensor, channels: number, what: string): void {
    if (x.ndim !== 4 || x.shape[1] !== channels) {
      throw new Error(`AutoencoderKL.${what}: expected [N, ${channels}, H, W], got [${x.shape.join(', ')}]`);
    }
    if (what === 'encode' && (x.shape[2] % this.downsampleFactor || x.shape[3] % this.downsampleFactor)) {
      throw new Error(`AutoencoderKL.encode: height and width must be multiples of ${this.downsampleFactor}, got ${x.shape[2]}x${x.shape[3]}`);
    }
  }
}

export interface EncodeLatentsOptions {
  /** Draws the posterior sample (as diffusers' latent_dist.sample(generator)); default: global RNG. */
  generator?: Generator;
  /** Take the posterior mean instead of a sample. */
  mode?: boolean;
}

/** Images in [-1, 1] -> the latents a latent diffusion model sees: (z - shift) * scalingFactor. */
export function encodeLatents(vae: AutoencoderKL, images: Tensor, o: EncodeLatentsOptions = {}): Tensor {
  return torch.noGrad(() => torch.scope(() => {
    const dist = vae.encode(images);
    const z = o.mode ? dist.mode() : dist.sample(o.generator);
    const shifted = vae.config.shiftFactor === null ? z : z.sub(vae.config.shiftFactor);
    return shifted.mul(vae.config.scalingFactor);
  }));
}

/** Model latents -> images (about [-1, 1]): undoes the scaling (and shift), then decodes. */
export function decodeLatents(vae: AutoencoderKL, latents: Tensor): Tensor {
  return torch.noGrad(() => torch.scope(() => {
    let z = latents.div(vae.config.scalingFactor);
    if (vae.config.shiftFactor !== null) z = z.add(vae.config.shiftFactor);
    return vae.decode(z);
  }));
}
