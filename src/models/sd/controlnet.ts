// diffusers' ControlNetModel: a trainable copy of the UNet's encoder (conv_in, time embedding,
// down blocks, mid block) fed the latent plus an embedding of the condition image, whose skip
// states and mid output go through zero-initialised 1x1 convs and are added to a frozen UNet's
// (UNet2DConditionModel.forward's downBlockAdditionalResiduals / midBlockAdditionalResidual).
// fromUNet copies the UNet's weights and zero-initialises as diffusers' from_unet does.
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import type { DType } from '../../torch';
import { DownBlock, TimestepEmbedding, UNetMidBlock2DCrossAttn } from './unet-blocks';
import {
  buildDownBlocks, buildMidBlock, buildTimeEmbedding, checkContext, embedTime, ModuleTrace, runDownBlocks,
  UNet2DConditionModel,
} from './unet-2d-condition';
import {
  CONTROLNET_DEFAULTS, ControlNetConfig, controlNetConfigFromUNet, SD15_CONTROLNET_CONFIG, validateControlNetConfig,
} from './unet-config';

const { nn, F } = torch;

/** A conv whose weight and bias start at zero (diffusers' zero_module). */
function zeroConv(inChannels: number, outChannels: number, kernel: number, padding = 0): torch.nn.Conv2d {
  const conv = new nn.Conv2d(inChannels, outChannels, kernel, { padding });
  for (const p of conv.parameters()) nn.init.zeros_(p);
  return conv;
}

/**
 * The condition image's encoder: conv_in, then per step a 3x3 conv and a stride-2 3x3 conv, SiLU
 * after each, then a zero-initialised conv_out to the UNet's first width (diffusers'
 * ControlNetConditioningEmbedding; SD1.5's (16, 32, 96, 256) downscales 512 -> 64).
 */
export class ControlNetConditioningEmbedding extends nn.Module {
  readonly conv_in: torch.nn.Conv2d;
  readonly blocks: torch.nn.ModuleList<torch.nn.Conv2d>;
  readonly conv_out: torch.nn.Conv2d;
  constructor(embeddingChannels: number, conditioningChannels: number, channels: readonly number[]) {
    super();
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(conditioningChannels, channels[0], 3, { padding: 1 }));
    const blocks: torch.nn.Conv2d[] = [];
    for (let i = 0; i < channels.length - 1; i++) {
      blocks.push(new nn.Conv2d(channels[i], channels[i], 3, { padding: 1 }));
      blocks.push(new nn.Conv2d(channels[i], channels[i + 1], 3, { padding: 1, stride: 2 }));
    }
    this.blocks = this.registerModule('blocks', new nn.ModuleList(blocks));
    this.conv_out = this.registerModule('conv_out', zeroConv(channels[channels.length - 1], embeddingChannels, 3, 1));
  }
  forward(condition: Tensor): Tensor {
    return torch.scope(() => {
      let h = F.silu(this.conv_in.forward(condition));
      for (const conv of this.blocks) h = F.silu(conv.forward(h));
      return this.conv_out.forward(h);
    });
  }
}

export interface ControlNetOutput {
  /** One residual per UNet skip state (conv_in's output first), as diffusers' down_block_res_samples. */
  downBlockResSamples: Tensor[];
  midBlockResSample: Tensor;
}

export interface ControlNetForwardOptions {
  /** Multiplies every residual (diffusers' conditioning_scale, default 1). */
  conditioningScale?: number;
  /** Residuals scaled from 0.1 (shallowest) to 1 (mid block) on a log scale (diffusers' guess_mode). */
  guessMode?: boolean;
  trace?: ModuleTrace;
}

export function controlNetConfig(overrides: Partial<ControlNetConfig> = {}): ControlNetConfig {
  return { ...structuredClone(SD15_CONTROLNET_CONFIG) as ControlNetConfig, ...overrides };
}

export class ControlNetModel extends nn.Module {
  readonly config: Readonly<ControlNetConfig>;
  readonly conv_in: torch.nn.Conv2d;
  readonly time_embedding: TimestepEmbedding;
  readonly controlnet_cond_embedding: ControlNetConditioningEmbedding;
  readonly down_blocks: torch.nn.ModuleList<DownBlock>;
  readonly controlnet_down_blocks: torch.nn.ModuleList<torch.nn.Conv2d>;
  readonly controlnet_mid_block: torch.nn.Conv2d;
  readonly mid_block: UNetMidBlock2DCrossAttn;

  constructor(config: Partial<ControlNetConfig> = {}) {
    super();
    const c = controlNetConfig(config);
    validateControlNetConfig(c);
    this.config = Object.freeze(structuredClone(c));
    const ch = c.blockOutChannels;
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.inChannels, ch[0], 3, { padding: 1 }));
    this.time_embedding = this.registerModule('time_embedding', buildTimeEmbedding(c));
    this.controlnet_cond_embedding = this.registerModule('controlnet_cond_embedding',
      new ControlNetConditioningEmbedding(ch[0], c.conditioningChannels, c.conditioningEmbeddingOutChannels));
    this.down_blocks = this.registerModule('down_blocks', new nn.ModuleList(buildDownBlocks(c)));
    // One zero conv per UNet skip state: conv_in's, each resnet's, each downsampler's.
    const zero: torch.nn.Conv2d[] = [zeroConv(ch[0], ch[0], 1)];
    ch.forEach((out, i) => {
      for (let j = 0; j < c.layersPerBlock; j++) zero.push(zeroConv(out, out, 1));
      if (i < ch.length - 1) zero.push(zeroConv(out, out, 1));
    });
    this.controlnet_down_blocks = this.registerModule('controlnet_down_blocks', new nn.ModuleList(zero));
    // diffusers registers controlnet_mid_block before mid_block (state_dict order).
    const top = ch[ch.length - 1];
    this.controlnet_mid_block = this.registerModule('controlnet_mid_block', zeroConv(top, top, 1));
    this.mid_block = this.registerModule('mid_block', buildMidBlock(c));
    this.eval();
  }

  get dtype(): DType {
    return this.conv_in.weight.dtype;
  }

  /**
   * A ControlNet for `unet` (diffusers' ControlNetModel.from_unet with load_weights_from_unet):
   * conv_in, time_embedding, down_blocks and mid_block copied from the UNet, the conditioning
   * embedding freshly initialised (its conv_out zero) and every zero conv zero. Its residuals are
   * exactly zero until trained, so the UNet's output is unchanged.
   */
  static fromUNet(unet: UNet2DConditionModel, o: Partial<typeof CONTROLNET_DEFAULTS> = {}): ControlNetModel {
    const model = new ControlNetModel(controlNetConfigFromUNet(unet.config, o));
    // Cast first, so that copied float64 weights never pass through float32.
    model.to({ dtype: unet.dtype, device: unet.conv_in.weight.device });
    torch.noGrad(() => {
      for (const part of ['conv_in', 'time_embedding', 'down_blocks', 'mid_block'] as const) {
        const target = model[part].stateDict();
        for (const [key, t] of unet[part].stateDict()) target.get(key)!.copy_(t);
      }
    });
    return model;
  }

  /** The condition image [B, conditioningChannels, 8H, 8W] (RGB in [0, 1] for SD1.5 ControlNets) -> [B, C0, H, W]. */
  embedCondition(condition: Tensor): Tensor {
    return torch.scope(() => {
      // The caller's image may be on the CPU (diffusers' prepare_image moves it to the model's device too).
      const device = this.conv_in.weight.device;
      let cond = condition.dtype === this.dtype && condition.device === device ? condition : condition.to({ dtype: this.dtype, device });
      if (this.config.controlnetConditioningChannelOrder === 'bgr') cond = cond.flip([1]);
      return this.controlnet_cond_embedding.forward(cond);
    });
  }

  /**
   * sample [B, in, H, W], timesteps (number or [B]), encoderHiddenStates [B, tokens, dim],
   * condition image [B, conditioningChannels, 8H, 8W] (for SD1.5's embedding) -> the residuals the
   * UNet adds.
   */
  forward(sample: Tensor, timesteps: Tensor | number, encoderHiddenStates: Tensor, condition: Tensor,
    o: ControlNetForwardOptions = {}): ControlNetOutput {
    const c = this.config;
    if (sample.ndim !== 4 || sample.shape[1] !== c.inChannels) {
      throw new Error(`ControlNetModel: sample must be [B, ${c.inChannels}, H, W], got [${sample.shape.join(', ')}]`);
    }
    checkContext(c, sample, encoderHiddenStates, 'ControlNetModel');
    if (condition.ndim !== 4 || condition.shape[0] !== sample.shape[0] || condition.shape[1] !== c.conditioningChannels) {
      throw new Error(`ControlNetModel: controlnet_cond must be [${sample.shape[0]}, ${c.conditioningChannels}, H, W], got [${condition.shape.join(', ')}]`);
    }
    const trace = o.trace;
    const scale = o.conditioningScale ?? 1;
    return torch.scope(() => {
      const dtype = this.dtype;
      const x = sample.dtype === dtype ? sample : sample.to(dtype);
      const context = encoderHiddenStates.dtype === dtype ? encoderHiddenStates : encoderHiddenStates.to(dtype);
      const temb = embedTime(c, this.time_embedding, timesteps, x.shape[0], dtype, x.device, trace);
      let h = this.conv_in.forward(x);
      trace?.('conv_in', h);
      const cond = this.embedCondition(condition);
      trace?.('controlnet_cond_embedding', cond);
      if (cond.shape.join() !== h.shape.join()) {
        throw new Error(`ControlNetModel: the condition image embeds to [${cond.shape}] but the latent to [${h.shape}] ` +
          `(the condition image must be ${2 ** (c.conditioningEmbeddingOutChannels.length - 1)}x the latent's size)`);
      }
      h = h.add(cond);
      const down = runDownBlocks(this.down_blocks, h, temb, context, trace);
      const mid = this.mid_block.forward(down.hidden, temb, context);
      trace?.('mid_block', mid);
      let residuals = down.states.map((s, i) => this.controlnet_down_blocks.at(i).forward(s));
      let midResidual = this.controlnet_mid_block.forward(mid);
      if (o.guessMode && !c.globalPoolConditions) {
        // logspace(-1, 0, n + 1) * scale: the shallowest residual x0.1, the mid block x1.
        const n = residuals.length;
        const scales = Array.from({ length: n + 1 }, (_, i) => 10 ** (-1 + i / n) * scale);
        residuals = residuals.map((r, i) => r.mul(scales[i]));
        midResidual = midResidual.mul(scales[n]);
      } else if (scale !== 1) {
        residuals = residuals.map((r) => r.mul(scale));
        midResidual = midResidual.mul(scale);
      }
      if (c.globalPoolConditions) {
        residuals = residuals.map((r) => r.mean([2, 3], true));
        midResidual = midResidual.mean([2, 3], true);
      }
      return { downBlockResSamples: residuals, midBlockResSample: midResidual };
    });
  }
}
