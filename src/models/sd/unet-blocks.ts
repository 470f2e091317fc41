// The building blocks of diffusers' UNet2DConditionModel and ControlNetModel (SD 1.x/2.x), with
// diffusers' module and parameter names, registered in diffusers' order (that order is the
// state_dict order): ResnetBlock2D with a time embedding, Transformer2DModel with
// BasicTransformerBlock (self-attention, cross-attention, GEGLU feed-forward), Downsample2D,
// Upsample2D, and the down / mid / up blocks SD uses.
import * as torch from '../../torch';
import { Tensor } from '../../torch';

const { nn, F } = torch;

// ---------------------------------------------------------------------------------------------
// Timesteps
// ---------------------------------------------------------------------------------------------

/**
 * diffusers' get_timestep_embedding: [N] timesteps -> [N, dim] sinusoids with frequencies
 * exp(-ln(10000) * j / (half - freqShift)), [sin | cos] or [cos | sin] (flipSinToCos). Computed in
 * float32 whatever the model's dtype, as diffusers does (float64 goldens include that rounding).
 */
export function timestepSinusoid(t: Tensor, dim: number, flipSinToCos: boolean, freqShift: number, maxPeriod = 10000): Tensor {
  if (t.ndim !== 1) throw new Error(`timestepSinusoid: timesteps must be 1-D [N], got [${t.shape.join(', ')}]`);
  return torch.scope(() => {
    const half = Math.floor(dim / 2);
    const exponent = torch.arange(0, half, 1, { dtype: 'float32', device: t.device }).mul(-Math.log(maxPeriod)).div(half - freqShift);
    const args = t.float().unsqueeze(1).mul(exponent.exp().unsqueeze(0));
    const [first, second] = flipSinToCos ? [args.cos(), args.sin()] : [args.sin(), args.cos()];
    let emb = torch.cat([first, second], -1);
    if (dim % 2) emb = F.pad(emb, [0, 1]);
    return emb;
  });
}

/** linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding). */
export class TimestepEmbedding extends nn.Module {
  readonly linear_1: torch.nn.Linear;
  readonly linear_2: torch.nn.Linear;
  constructor(inChannels: number, timeEmbedDim: number) {
    super();
    this.linear_1 = this.registerModule('linear_1', new nn.Linear(inChannels, timeEmbedDim));
    this.linear_2 = this.registerModule('linear_2', new nn.Linear(timeEmbedDim, timeEmbedDim));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.linear_2.forward(F.silu(this.linear_1.forward(x))));
  }
}

// ---------------------------------------------------------------------------------------------
// Resnet, down/upsampling
// ---------------------------------------------------------------------------------------------

/** GroupNorm -> SiLU -> conv, + projected time embedding, GroupNorm -> SiLU -> conv, + skip (ResnetBlock2D, time_embedding_norm 'default'). */
export class ResnetBlock2D extends nn.Module {
  readonly norm1: torch.nn.GroupNorm;
  readonly conv1: torch.nn.Conv2d;
  readonly time_emb_proj: torch.nn.Linear;
  readonly norm2: torch.nn.GroupNorm;
  readonly conv2: torch.nn.Conv2d;
  readonly conv_shortcut: torch.nn.Conv2d | null;
  constructor(inChannels: number, outChannels: number, tembChannels: number, groups: number, eps: number,
    readonly outputScaleFactor = 1) {
    super();
    this.norm1 = this.registerModule('norm1', new nn.GroupNorm(groups, inChannels, eps));
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(inChannels, outChannels, 3, { padding: 1 }));
    this.time_emb_proj = this.registerModule('time_emb_proj', new nn.Linear(tembChannels, outChannels));
    this.norm2 = this.registerModule('norm2', new nn.GroupNorm(groups, outChannels, eps));
    this.conv2 = this.registerModule('conv2', new nn.Conv2d(outChannels, outChannels, 3, { padding: 1 }));
    this.conv_shortcut = inChannels !== outChannels
      ? this.registerModule('conv_shortcut', new nn.Conv2d(inChannels, outChannels, 1))
      : null;
  }
  forward(x: Tensor, temb: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.conv1.forward(F.silu(this.norm1.forward(x)));
      h = h.add(this.time_emb_proj.forward(F.silu(temb)).unsqueeze(-1).unsqueeze(-1));
      h = this.conv2.forward(F.silu(this.norm2.forward(h)));
      const out = (this.conv_shortcut ? this.conv_shortcut.forward(x) : x).add(h);
      return this.outputScaleFactor === 1 ? out : out.div(this.outputScaleFactor);
    });
  }
}

/** A stride-2 3x3 conv; padding 0 pads right and bottom by one first (diffusers' Downsample2D with use_conv). */
export class Downsample2D extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  constructor(channels: number, readonly padding: number) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(channels, channels, 3, { stride: 2, padding }));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.conv.forward(this.padding === 0 ? F.pad(x, [0, 1, 0, 1]) : x));
  }
}

/** Nearest-neighbour upsampling (x2, or to outputSize), then a 3x3 conv (diffusers' Upsample2D with use_conv). */
export class Upsample2D extends nn.Module {
  readonly conv: torch.nn.Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(channels, channels, 3, { padding: 1 }));
  }
  forward(x: Tensor, outputSize?: [number, number]): Tensor {
    return torch.scope(() => {
      // Old libtorch has no bfloat16 nearest upsampling: diffusers goes through float32 too.
      const input = x.dtype === 'bfloat16' ? x.float() : x;
      let up = F.interpolate(input, outputSize ? { size: outputSize, mode: 'nearest' } : { scaleFactor: 2, mode: 'nearest' });
      if (up.dtype !== x.dtype) up = up.to(x.dtype);
      return this.conv.forward(up);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Attention and the transformer
// ---------------------------------------------------------------------------------------------

/**
 * diffusers' Attention as BasicTransformerBlock builds it: bias-free to_q/to_k/to_v, to_out =
 * [Linear, Dropout]; softmax(q k^T / sqrt(dimHead)) v per head. Keys/values come from `context`
 * (cross-attention) or from x itself.
 */
export class CrossAttention extends nn.Module {
  readonly to_q: torch.nn.Linear;
  readonly to_k: torch.nn.Linear;
  readonly to_v: torch.nn.Linear;
  readonly to_out: torch.nn.ModuleList<torch.nn.Linear>;
  constructor(queryDim: number, contextDim: number, readonly heads: number, readonly dimHead: number, readonly upcast = false) {
    super();
    const inner = heads * dimHead;
    this.to_q = this.registerModule('to_q', new nn.Linear(queryDim, inner, false));
    this.to_k = this.registerModule('to_k', new nn.Linear(contextDim, inner, false));
    this.to_v = this.registerModule('to_v', new nn.Linear(contextDim, inner, false));
    this.to_out = this.registerModule('to_out', new nn.ModuleList([new nn.Linear(inner, queryDim)]));
  }
  forward(x: Tensor, context?: Tensor): Tensor {
    return torch.scope(() => {
      const kv = context ?? x;
      const [b, n] = x.shape;
      const split = (t: Tensor): Tensor => t.view(b, -1, this.heads, this.dimHead).transpose(1, 2);
      let q = split(this.to_q.forward(x));
      let k = split(this.to_k.forward(kv));
      let v = split(this.to_v.forward(kv));
      // upcast_attention (SD 2.1) / half precision: scores and softmax in float32.
      const half = q.dtype === 'float16' || q.dtype === 'bfloat16';
      if (half && (this.upcast || !F.hasFusedAttention())) [q, k, v] = [q.float(), k.float(), v.float()];
      let out = F.scaledDotProductAttention(q, k, v, { scale: 1 / Math.sqrt(this.dimHead) });
      if (out.dtype !== x.dtype) out = out.to(x.dtype);
      return this.to_out.at(0).forward(out.transpose(1, 2).reshape(b, n, this.heads * this.dimHead));
    });
  }
}

/** Linear to twice the width; one half times GELU(other half) (diffusers' GEGLU). */
export class GEGLU extends nn.Module {
  readonly proj: torch.nn.Linear;
  constructor(dimIn: number, dimOut: number) {
    super();
    this.proj = this.registerModule('proj', new nn.Linear(dimIn, dimOut * 2));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      const [hidden, gate] = this.proj.forward(x).chunk(2, -1);
      return hidden.mul(F.gelu(gate));
    });
  }
}

/** net = [GEGLU(dim, 4 dim), Dropout, Linear(4 dim, dim)] (diffusers' FeedForward, activation 'geglu'). */
export class FeedForward extends nn.Module {
  readonly net: torch.nn.ModuleList;
  private readonly geglu: GEGLU;
  private readonly out: torch.nn.Linear;
  constructor(dim: number, mult = 4) {
    super();
    this.geglu = new GEGLU(dim, dim * mult);
    this.out = new nn.Linear(dim * mult, dim);
    this.net = this.registerModule('net', new nn.ModuleList([this.geglu, new nn.Dropout(0), this.out]));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.out.forward(this.geglu.forward(x)));
  }
}

/** LayerNorm -> self-attention, LayerNorm -> cross-attention, LayerNorm -> feed-forward, each residual (BasicTransformerBlock). */
export class BasicTransformerBlock extends nn.Module {
  readonly norm1: torch.nn.LayerNorm;
  readonly attn1: CrossAttention;
  readonly norm2: torch.nn.LayerNorm;
  readonly attn2: CrossAttention;
  readonly norm3: torch.nn.LayerNorm;
  readonly ff: FeedForward;
  constructor(dim: number, heads: number, dimHead: number, crossAttentionDim: number,
    readonly onlyCrossAttention = false, upcast = false) {
    super();
    this.norm1 = this.registerModule('norm1', new nn.LayerNorm(dim, 1e-5));
    this.attn1 = this.registerModule('attn1', new CrossAttention(dim, onlyCrossAttention ? crossAttentionDim : dim, heads, dimHead, upcast));
    this.norm2 = this.registerModule('norm2', new nn.LayerNorm(dim, 1e-5));
    this.attn2 = this.registerModule('attn2', new CrossAttention(dim, crossAttentionDim, heads, dimHead, upcast));
    this.norm3 = this.registerModule('norm3', new nn.LayerNorm(dim, 1e-5));
    this.ff = this.registerModule('ff', new FeedForward(dim));
  }
  forward(x: Tensor, context: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.attn1.forward(this.norm1.forward(x), this.onlyCrossAttention ? context : undefined).add(x);
      h = this.attn2.forward(this.norm2.forward(h), context).add(h);
      return this.ff.forward(this.norm3.forward(h)).add(h);
    });
  }
}

/**
 * GroupNorm (eps 1e-6) -> proj_in -> transformer blocks over the H*W tokens -> proj_out, plus the
 * input (diffusers' Transformer2DModel on continuous input). proj_in/proj_out are 1x1 convs (SD1.x)
 * or Linear (useLinearProjection, SD2.x).
 */
export class Transformer2DModel extends nn.Module {
  readonly norm: torch.nn.GroupNorm;
  readonly proj_in: torch.nn.Conv2d | torch.nn.Linear;
  readonly transformer_blocks: torch.nn.ModuleList<BasicTransformerBlock>;
  readonly proj_out: torch.nn.Conv2d | torch.nn.Linear;
  constructor(channels: number, heads: number, dimHead: number, layers: number, crossAttentionDim: number, groups: number,
    readonly useLinearProjection: boolean, onlyCrossAttention = false, upcast = false) {
    super();
    const inner = heads * dimHead;
    this.norm = this.registerModule('norm', new nn.GroupNorm(groups, channels, 1e-6));
    this.proj_in = this.registerModule('proj_in', useLinearProjection ? new nn.Linear(channels, inner) : new nn.Conv2d(channels, inner, 1));
    this.transformer_blocks = this.registerModule('transformer_blocks', new nn.ModuleList(Array.from({ length: layers },
      () => new BasicTransformerBlock(inner, heads, dimHead, crossAttentionDim, onlyCrossAttention, upcast))));
    this.proj_out = this.registerModule('proj_out', useLinearProjection ? new nn.Linear(inner, channels) : new nn.Conv2d(inner, channels, 1));
  }
  forward(x: Tensor, context: Tensor): Tensor {
    return torch.scope(() => {
      const [b, , h, w] = x.shape;
      const toTokens = (t: Tensor): Tensor => t.permute(0, 2, 3, 1).reshape(b, h * w, t.shape[1]);
      const normed = this.norm.forward(x);
      let tokens = this.useLinearProjection ? this.proj_in.forward(toTokens(normed)) : toTokens(this.proj_in.forward(normed));
      for (const block of this.transformer_blocks) tokens = block.forward(tokens, context);
      const toImage = (t: Tensor): Tensor => t.reshape(b, h, w, t.shape[2]).permute(0, 3, 1, 2).contiguous();
      const out = this.useLinearProjection ? toImage(this.proj_out.forward(tokens)) : this.proj_out.forward(toImage(tokens));
      return out.add(x);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Down, mid and up blocks
// ---------------------------------------------------------------------------------------------

/** What every down / mid / up block is built from (one level of the UNet). */
export interface BlockOptions {
  layers: number;
  tembChannels: number;
  groups: number;
  eps: number;
  /** Cross-attention blocks only. */
  heads?: number;
  transformerLayers?: number;
  crossAttentionDim?: number;
  useLinearProjection?: boolean;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
}

/** One Transformer2DModel per layer of a block at `channels` wide. */
function transformers(channels: number, o: BlockOptions): torch.nn.ModuleList<Transformer2DModel> {
  if (!o.heads || !o.crossAttentionDim) throw new Error('cross-attention block: heads and crossAttentionDim are required');
  if (channels % o.heads) throw new Error(`cross-attention block: ${channels} channels do not split into ${o.heads} heads`);
  const { heads, crossAttentionDim } = o;
  return new nn.ModuleList(Array.from({ length: o.layers }, () => new Transformer2DModel(channels, heads, channels / heads,
    o.transformerLayers ?? 1, crossAttentionDim, o.groups, o.useLinearProjection ?? false, o.onlyCrossAttention ?? false,
    o.upcastAttention ?? false)));
}

/** A down block's output: the hidden state and every state it hands to the up path (after each resnet / attention, and after the downsampler). */
export interface DownBlockOutput {
  hidden: Tensor;
  states: Tensor[];
}

/** Resnets (each followed by a Transformer2DModel when cross-attention), then an optional downsampler. */
export class DownBlock extends nn.Module {
  // diffusers registers attentions before resnets (CrossAttnDownBlock2D): the state_dict order.
  readonly attentions: torch.nn.ModuleList<Transformer2DModel> | null;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly downsamplers: torch.nn.ModuleList<Downsample2D> | null;
  constructor(inChannels: number, outChannels: number, crossAttention: boolean, addDownsample: boolean,
    downsamplePadding: number, o: BlockOptions) {
    super();
    this.attentions = crossAttention ? this.registerModule('attentions', transformers(outChannels, o)) : null;
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: o.layers },
      (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, o.tembChannels, o.groups, o.eps))));
    this.downsamplers = addDownsample
      ? this.registerModule('downsamplers', new nn.ModuleList([new Downsample2D(outChannels, downsamplePadding)]))
      : null;
  }
  forward(x: Tensor, temb: Tensor, context: Tensor): DownBlockOutput {
    return torch.scope(() => {
      const states: Tensor[] = [];
      let h = x;
      this.resnets.items.forEach((resnet, i) => {
        h = resnet.forward(h, temb);
        if (this.attentions) h = this.attentions.at(i).forward(h, context);
        states.push(h);
      });
      if (this.downsamplers) {
        h = this.downsamplers.at(0).forward(h);
        states.push(h);
      }
      return { hidden: h, states };
    });
  }
}

/** resnet, then (transformer, resnet) pairs at the lowest resolution (UNetMidBlock2DCrossAttn). */
export class UNetMidBlock2DCrossAttn extends nn.Module {
  readonly attentions: torch.nn.ModuleList<Transformer2DModel>;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  constructor(channels: number, outputScaleFactor: number, o: BlockOptions) {
    super();
    this.attentions = this.registerModule('attentions', transformers(channels, o));
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: o.layers + 1 },
      () => new ResnetBlock2D(channels, channels, o.tembChannels, o.groups, o.eps, outputScaleFactor))));
  }
  forward(x: Tensor, temb: Tensor, context: Tensor): Tensor {
    return torch.scope(() => {
      let h = this.resnets.at(0).forward(x, temb);
      this.attentions.items.forEach((attn, i) => {
        h = attn.forward(h, context);
        h = this.resnets.at(i + 1).forward(h, temb);
      });
      return h;
    });
  }
}

/**
 * Resnets fed the hidden state concatenated with the matching down-path state (last first), each
 * followed by a Transformer2DModel when cross-attention, then an optional upsampler (UpBlock2D /
 * CrossAttnUpBlock2D).
 */
export class UpBlock extends nn.Module {
  readonly attentions: torch.nn.ModuleList<Transformer2DModel> | null;
  readonly resnets: torch.nn.ModuleList<ResnetBlock2D>;
  readonly upsamplers: torch.nn.ModuleList<Upsample2D> | null;
  constructor(inChannels: number, prevOutputChannels: number, outChannels: number, crossAttention: boolean,
    addUpsample: boolean, o: BlockOptions) {
    super();
    this.attentions = crossAttention ? this.registerModule('attentions', transformers(outChannels, o)) : null;
    this.resnets = this.registerModule('resnets', new nn.ModuleList(Array.from({ length: o.layers }, (_, i) => {
      const skip = i === o.layers - 1 ? inChannels : outChannels;
      const input = i === 0 ? prevOutputChannels : outChannels;
      return new ResnetBlock2D(input + skip, outChannels, o.tembChannels, o.groups, o.eps);
    })));
    this.upsamplers = addUpsample ? this.registerModule('upsamplers', new nn.ModuleList([new Upsample2D(outChannels)])) : null;
  }
  /** `skips`: this block's down-path states in down order (one per resnet); consumed from the end. */
  forward(x: Tensor, skips: Tensor[], temb: Tensor, context: Tensor, upsampleSize?: [number, number]): Tensor {
    if (skips.length !== this.resnets.length) {
      throw new Error(`UpBlock: expected ${this.resnets.length} skip connections, got ${skips.length}`);
    }
    return torch.scope(() => {
      let h = x;
      this.resnets.items.forEach((resnet, i) => {
        h = resnet.forward(torch.cat([h, skips[skips.length - 1 - i]], 1), temb);
        if (this.attentions) h = this.attentions.at(i).forward(h, context);
      });
      return this.upsamplers ? this.upsamplers.at(0).forward(h, upsampleSize) : h;
    });
  }
}
