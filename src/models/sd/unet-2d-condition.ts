// Stable Diffusion's denoiser: diffusers' UNet2DConditionModel (SD 1.x/2.x configurations), with
// diffusers' parameter names and state_dict order, so `unet/diffusion_pytorch_model.safetensors`
// loads one to one (ldm checkpoints through src/models/sd/unet-io.ts). It also takes a
// ControlNet's residuals (added to the skip connections and the mid block's output).
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import type { DType } from '../../torch';
import {
  BlockOptions, DownBlock, TimestepEmbedding, timestepSinusoid, UNetMidBlock2DCrossAttn, UpBlock,
} from './unet-blocks';
import { headsPerBlock, perBlock, SD15_UNET_CONFIG, UNetConfig, UNetEncoderConfig, validateUNetConfig } from './unet-config';

const { nn, F } = torch;

/** Called with each top-level module's output during forward (`time_proj`, `down_blocks.0`, ...): for locating divergences. */
export type ModuleTrace = (name: string, output: Tensor) => void;

// ---------------------------------------------------------------------------------------------
// The parts the UNet and the ControlNet share
// ---------------------------------------------------------------------------------------------

function blockOptions(c: UNetEncoderConfig, layers: number, heads: number, transformerLayers: number): BlockOptions {
  return {
    layers, tembChannels: c.blockOutChannels[0] * 4, groups: c.normNumGroups, eps: c.normEps, heads, transformerLayers,
    crossAttentionDim: c.crossAttentionDim, useLinearProjection: c.useLinearProjection, upcastAttention: c.upcastAttention,
  };
}

/** The down path's blocks, as diffusers builds them (the last one without downsampler). */
export function buildDownBlocks(c: UNetEncoderConfig): DownBlock[] {
  const heads = headsPerBlock(c);
  const layers = perBlock(c.transformerLayersPerBlock, c.blockOutChannels.length, 'transformerLayersPerBlock');
  return c.downBlockTypes.map((type, i) => {
    const input = i === 0 ? c.blockOutChannels[0] : c.blockOutChannels[i - 1];
    const last = i === c.blockOutChannels.length - 1;
    return new DownBlock(input, c.blockOutChannels[i], type === 'CrossAttnDownBlock2D', !last, c.downsamplePadding,
      blockOptions(c, c.layersPerBlock, heads[i], layers[i]));
  });
}

export function buildMidBlock(c: UNetEncoderConfig): UNetMidBlock2DCrossAttn {
  const n = c.blockOutChannels.length;
  const heads = headsPerBlock(c)[n - 1];
  const layers = perBlock(c.transformerLayersPerBlock, n, 'transformerLayersPerBlock')[n - 1];
  return new UNetMidBlock2DCrossAttn(c.blockOutChannels[n - 1], c.midBlockScaleFactor, blockOptions(c, 1, heads, layers));
}

export function buildTimeEmbedding(c: UNetEncoderConfig): TimestepEmbedding {
  return new TimestepEmbedding(c.blockOutChannels[0], c.blockOutChannels[0] * 4);
}

/** One timestep per batch element: a number or a 0-d / 1-element tensor is repeated (as diffusers' expand). */
export function batchTimesteps(timesteps: Tensor | number, batch: number, device: Tensor['device']): Tensor {
  return torch.scope(() => {
    // diffusers makes a float64 (or int64) tensor of a Python number; only its float32 value is used.
    const t = typeof timesteps === 'number' ? torch.full([1], timesteps, { dtype: 'float64', device }) : timesteps.to({ device });
    if (t.numel === batch && t.ndim === 1) return t;
    if (t.numel === 1) return t.reshape(1).expand(batch).contiguous();
    throw new Error(`timesteps: expected a number or ${batch} values (one per batch element), got shape [${t.shape.join(', ')}]`);
  });
}

/** time_proj (float32 sinusoid, then cast to the model's dtype) and time_embedding. */
export function embedTime(c: UNetEncoderConfig, timeEmbedding: TimestepEmbedding, timesteps: Tensor | number, batch: number,
  dtype: DType, device: Tensor['device'], trace?: ModuleTrace): Tensor {
  return torch.scope(() => {
    const sinusoid = timestepSinusoid(batchTimesteps(timesteps, batch, device), c.blockOutChannels[0], c.flipSinToCos, c.freqShift);
    trace?.('time_proj', sinusoid);
    const emb = timeEmbedding.forward(sinusoid.to(dtype));
    trace?.('time_embedding', emb);
    return emb;
  });
}

/** Runs the down blocks; returns the hidden state and every skip state (conv_in's output first), as diffusers' down_block_res_samples. */
export function runDownBlocks(blocks: Iterable<DownBlock>, h: Tensor, temb: Tensor, context: Tensor, trace?: ModuleTrace): { hidden: Tensor; states: Tensor[] } {
  return torch.scope(() => {
    const states = [h];
    let hidden = h;
    let i = 0;
    for (const block of blocks) {
      const out = block.forward(hidden, temb, context);
      trace?.(`down_blocks.${i++}`, out.hidden);
      hidden = out.hidden;
      states.push(...out.states);
    }
    return { hidden, states };
  });
}

export function checkContext(c: UNetEncoderConfig, sample: Tensor, context: Tensor, what: string): void {
  if (context.ndim !== 3 || context.shape[0] !== sample.shape[0] || context.shape[2] !== c.crossAttentionDim) {
    throw new Error(`${what}: encoder_hidden_states must be [${sample.shape[0]}, tokens, ${c.crossAttentionDim}], got [${context.shape.join(', ')}]`);
  }
}

// ---------------------------------------------------------------------------------------------
// UNet2DConditionModel
// ---------------------------------------------------------------------------------------------

export interface UNetForwardOptions {
  /** A ControlNet's down_block_res_samples: added to the skip states (one per state, same shapes). */
  downBlockAdditionalResiduals?: Tensor[];
  /** A ControlNet's mid_block_res_sample: added to the mid block's output. */
  midBlockAdditionalResidual?: Tensor;
  trace?: ModuleTrace;
}

export function unetConfig(overrides: Partial<UNetConfig> = {}): UNetConfig {
  return { ...structuredClone(SD15_UNET_CONFIG) as UNetConfig, ...overrides };
}

export class UNet2DConditionModel extends nn.Module {
  readonly config: Readonly<UNetConfig>;
  readonly conv_in: torch.nn.Conv2d;
  readonly time_embedding: TimestepEmbedding;
  readonly down_blocks: torch.nn.ModuleList<DownBlock>;
  readonly up_blocks: torch.nn.ModuleList<UpBlock>;
  readonly mid_block: UNetMidBlock2DCrossAttn;
  readonly conv_norm_out: torch.nn.GroupNorm;
  readonly conv_out: torch.nn.Conv2d;

  constructor(config: Partial<UNetConfig> = {}) {
    super();
    const c = unetConfig(config);
    validateUNetConfig(c);
    this.config = Object.freeze(structuredClone(c));
    const ch = c.blockOutChannels;
    const n = ch.length;
    this.conv_in = this.registerModule('conv_in', new nn.Conv2d(c.inChannels, ch[0], 3, { padding: 1 }));
    this.time_embedding = this.registerModule('time_embedding', buildTimeEmbedding(c));
    this.down_blocks = this.registerModule('down_blocks', new nn.ModuleList(buildDownBlocks(c)));
    // diffusers registers up_blocks before mid_block (state_dict order), though mid_block runs first.
    const reversed = [...ch].reverse();
    const heads = [...headsPerBlock(c)].reverse();
    const layers = [...perBlock(c.transformerLayersPerBlock, n, 'transformerLayersPerBlock')].reverse();
    this.up_blocks = this.registerModule('up_blocks', new nn.ModuleList(c.upBlockTypes.map((type, i) => {
      const prev = reversed[Math.max(i - 1, 0)];
      const input = reversed[Math.min(i + 1, n - 1)];
      return new UpBlock(input, prev, reversed[i], type === 'CrossAttnUpBlock2D', i < n - 1,
        { layers: c.layersPerBlock + 1, tembChannels: ch[0] * 4, groups: c.normNumGroups, eps: c.normEps, heads: heads[i],
          transformerLayers: layers[i], crossAttentionDim: c.crossAttentionDim, useLinearProjection: c.useLinearProjection,
          upcastAttention: c.upcastAttention });
    })));
    this.mid_block = this.registerModule('mid_block', buildMidBlock(c));
    this.conv_norm_out = this.registerModule('conv_norm_out', new nn.GroupNorm(c.normNumGroups, ch[0], c.normEps));
    this.conv_out = this.registerModule('conv_out', new nn.Conv2d(ch[0], c.outChannels, 3, { padding: 1 }));
    this.eval();
  }

  get dtype(): DType {
    return this.conv_in.weight.dtype;
  }

  /**
   * sample [B, in, H, W] (latents), timesteps (number or [B]), encoderHiddenStates [B, tokens,
   * crossAttentionDim] -> the prediction [B, out, H, W] (diffusers' `.sample`).
   */
  forward(sample: Tensor, timesteps: Tensor | number, encoderHiddenStates: Tensor, o: UNetForwardOptions = {}): Tensor {
    const c = this.config;
    if (sample.ndim !== 4 || sample.shape[1] !== c.inChannels) {
      throw new Error(`UNet2DConditionModel: sample must be [B, ${c.inChannels}, H, W], got [${sample.shape.join(', ')}]`);
    }
    checkContext(c, sample, encoderHiddenStates, 'UNet2DConditionModel');
    const trace = o.trace;
    return torch.scope(() => {
      const dtype = this.dtype;
      let x = sample.dtype === dtype ? sample : sample.to(dtype);
      const context = encoderHiddenStates.dtype === dtype ? encoderHiddenStates : encoderHiddenStates.to(dtype);
      // Sizes that are not multiples of the total upsampling get their skip states' sizes on the way up.
      const factor = 2 ** (c.blockOutChannels.length - 1);
      const forwardUpsampleSize = x.shape[2] % factor !== 0 || x.shape[3] % factor !== 0;
      if (c.centerInputSample) x = x.mul(2).sub(1);
      const temb = embedTime(c, this.time_embedding, timesteps, x.shape[0], dtype, x.device, trace);
      x = this.conv_in.forward(x);
      trace?.('conv_in', x);
      const down = runDownBlocks(this.down_blocks, x, temb, context, trace);
      let states = down.states;
      if (o.downBlockAdditionalResiduals) {
        const extra = o.downBlockAdditionalResiduals;
        if (extra.length !== states.length) {
          throw new Error(`UNet2DConditionModel: ${extra.length} down block residuals given, the down path has ${states.length} skip states`);
        }
        states = states.map((s, i) => {
          if (extra[i].shape.join() !== s.shape.join()) {
            throw new Error(`UNet2DConditionModel: down block residual ${i} has shape [${extra[i].shape}], expected [${s.shape}]`);
          }
          return s.add(extra[i]);
        });
      }
      let h = this.mid_block.forward(down.hidden, temb, context);
      trace?.('mid_block', h);
      if (o.midBlockAdditionalResidual) h = h.add(o.midBlockAdditionalResidual);
      this.up_blocks.items.forEach((block, i) => {
        const skips = states.slice(states.length - block.resnets.length);
        states = states.slice(0, states.length - block.resnets.length);
        const last = i === this.up_blocks.length - 1;
        const size = !last && forwardUpsampleSize ? states[states.length - 1].shape.slice(2) as [number, number] : undefined;
        h = block.forward(h, skips, temb, context, size);
        trace?.(`up_blocks.${i}`, h);
      });
      h = this.conv_norm_out.forward(h);
      trace?.('conv_norm_out', h);
      return this.conv_out.forward(F.silu(h));
    });
  }
}
