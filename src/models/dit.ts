// DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers"), a port of the official
// facebookresearch/DiT models.py. Module and parameter names equal the official state_dict keys
// (x_embedder.proj.weight, t_embedder.mlp.0.weight, blocks.0.adaLN_modulation.1.bias, ...), so
// official checkpoints load one to one. The timm building blocks the official code imports
// (PatchEmbed, Attention, Mlp) are written out here with timm's parameter names.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { cfgModel } from '../diffusion/cfg';
import { CheckpointedChain } from './checkpointing';

const { nn, F } = torch;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/** DiT's constructor arguments (the official snake_case names, camelCased). */
export interface DiTConfig {
  inputSize: number;
  patchSize: number;
  inChannels: number;
  hiddenSize: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  classDropoutProb: number;
  numClasses: number;
  learnSigma: boolean;
  /**
   * DiffFit scale factors as in the Diff-Tuning fork (use_gamma): learnable gamma1/gamma2 (init 1)
   * on the attention and MLP branches of the first gammaDepth blocks and on the qkv and proj
   * outputs inside their attention. Off by default (the official DiT has none).
   */
  useGamma: boolean;
  /** Blocks that carry gammas (the fork: the first 14 of DiT-XL's 28); default half the depth. */
  gammaDepth?: number;
}

/** The official constructor defaults (DiT-XL/2 on 256x256 ImageNet latents). */
export const DIT_DEFAULTS: Readonly<DiTConfig> = Object.freeze({
  inputSize: 32,
  patchSize: 2,
  inChannels: 4,
  hiddenSize: 1152,
  depth: 28,
  numHeads: 16,
  mlpRatio: 4.0,
  classDropoutProb: 0.1,
  numClasses: 1000,
  learnSigma: true,
  useGamma: false,
});

const SIZES = {
  XL: { depth: 28, hiddenSize: 1152, numHeads: 16 },
  L: { depth: 24, hiddenSize: 1024, numHeads: 16 },
  B: { depth: 12, hiddenSize: 768, numHeads: 12 },
  S: { depth: 12, hiddenSize: 384, numHeads: 6 },
} as const;

export type DiTModelName =
  | 'DiT-XL/2' | 'DiT-XL/4' | 'DiT-XL/8'
  | 'DiT-L/2' | 'DiT-L/4' | 'DiT-L/8'
  | 'DiT-B/2' | 'DiT-B/4' | 'DiT-B/8'
  | 'DiT-S/2' | 'DiT-S/4' | 'DiT-S/8';

/** The official named models (DiT_models in models.py): size and patch; the rest is per use. */
export const DIT_MODELS: Readonly<Record<DiTModelName, Pick<DiTConfig, 'depth' | 'hiddenSize' | 'numHeads' | 'patchSize'>>> =
  Object.freeze(Object.fromEntries(
    (Object.keys(SIZES) as (keyof typeof SIZES)[]).flatMap((size) =>
      [2, 4, 8].map((patch) => [`DiT-${size}/${patch}`, { ...SIZES[size], patchSize: patch }])),
  ) as Record<DiTModelName, Pick<DiTConfig, 'depth' | 'hiddenSize' | 'numHeads' | 'patchSize'>>);

export function isDiTModelName(name: string): name is DiTModelName {
  return Object.prototype.hasOwnProperty.call(DIT_MODELS, name);
}

/** A full config: official defaults, then a named model's size and patch, then overrides. */
export function ditConfig(name?: DiTModelName, overrides: Partial<DiTConfig> = {}): DiTConfig {
  if (name !== undefined && !isDiTModelName(name)) {
    throw new Error(`unknown DiT model '${name}' (known: ${Object.keys(DIT_MODELS).join(', ')})`);
  }
  return { ...DIT_DEFAULTS, ...(name ? DIT_MODELS[name] : {}), ...overrides };
}

const SNAKE_KEYS: Record<string, keyof DiTConfig> = {
  input_size: 'inputSize',
  patch_size: 'patchSize',
  in_channels: 'inChannels',
  hidden_size: 'hiddenSize',
  depth: 'depth',
  num_heads: 'numHeads',
  mlp_ratio: 'mlpRatio',
  class_dropout_prob: 'classDropoutProb',
  num_classes: 'numClasses',
  learn_sigma: 'learnSigma',
  use_gamma: 'useGamma',
  gamma_depth: 'gammaDepth',
};

/** Maps the official snake_case constructor arguments (e.g. a config.json) onto a full DiTConfig. */
export function configFromModelArgs(args: Record<string, unknown>, base: DiTConfig = { ...DIT_DEFAULTS }): DiTConfig {
  const out: DiTConfig = { ...base };
  for (const [key, value] of Object.entries(args)) {
    const field = SNAKE_KEYS[key] ?? (Object.values(SNAKE_KEYS).includes(key as keyof DiTConfig) ? key as keyof DiTConfig : undefined);
    if (!field) throw new Error(`unknown DiT argument '${key}'`);
    if (field === 'learnSigma' || field === 'useGamma') {
      if (typeof value !== 'boolean') throw new TypeError(`DiT argument '${key}' must be a boolean`);
      out[field] = value;
    } else {
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`DiT argument '${key}' must be a number`);
      out[field] = value;
    }
  }
  return out;
}

/** The official constructor arguments (snake_case) of a config; the DiffFit ones only when on. */
export function modelArgs(c: DiTConfig): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = {};
  for (const [snake, field] of Object.entries(SNAKE_KEYS)) {
    const v = field === 'gammaDepth' ? (c.useGamma ? gammaDepth(c) : undefined) : c[field];
    if (v !== undefined && !(field === 'useGamma' && !v)) out[snake] = v;
  }
  return out;
}

/** How many leading blocks carry DiffFit gammas. */
export function gammaDepth(c: DiTConfig): number {
  return c.gammaDepth ?? Math.floor(c.depth / 2);
}

function validate(c: DiTConfig): void {
  const ints: (keyof DiTConfig)[] = ['inputSize', 'patchSize', 'inChannels', 'hiddenSize', 'depth', 'numHeads', 'numClasses'];
  for (const k of ints) {
    if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new Error(`DiT: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.inputSize % c.patchSize) throw new Error(`DiT: inputSize ${c.inputSize} is not a multiple of patchSize ${c.patchSize}`);
  if (c.hiddenSize % c.numHeads) throw new Error(`DiT: hiddenSize ${c.hiddenSize} is not divisible by numHeads ${c.numHeads}`);
  if (c.hiddenSize % 4) throw new Error(`DiT: hiddenSize ${c.hiddenSize} must be a multiple of 4 (2-D sin-cos position embedding)`);
  if (!(c.mlpRatio > 0)) throw new Error(`DiT: mlpRatio must be positive, got ${c.mlpRatio}`);
  if (!(c.classDropoutProb >= 0 && c.classDropoutProb < 1)) {
    throw new Error(`DiT: classDropoutProb must be in [0, 1), got ${c.classDropoutProb}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding layers for timesteps, class labels and image patches
// ---------------------------------------------------------------------------------------------

/** x * (1 + scale) + shift, with per-sample [N, D] shift/scale broadcast over tokens. */
export function modulate(x: Tensor, shift: Tensor, scale: Tensor): Tensor {
  return torch.scope(() => x.mul(scale.unsqueeze(1).add(1)).add(shift.unsqueeze(1)));
}

/** timm's PatchEmbed: a Conv2d with kernel = stride = patch, then [N, C, H, W] -> [N, T, D]. */
export class PatchEmbed extends nn.Module {
  readonly proj: torch.nn.Conv2d;
  readonly gridSize: number;
  readonly numPatches: number;
  constructor(readonly imgSize: number, readonly patchSize: number, inChans: number, embedDim: number) {
    super();
    this.gridSize = Math.floor(imgSize / patchSize);
    this.numPatches = this.gridSize * this.gridSize;
    this.proj = this.registerModule('proj', new nn.Conv2d(inChans, embedDim, patchSize, { stride: patchSize, bias: true }));
  }
  forward(x: Tensor): Tensor {
    const [, , h, w] = x.shape;
    if (h !== this.imgSize || w !== this.imgSize) {
      throw new Error(`PatchEmbed: input is ${h}x${w}, the model was built for ${this.imgSize}x${this.imgSize}`);
    }
    return torch.scope(() => this.proj.forward(x).flatten(2).transpose(1, 2));
  }
}

/** Embeds scalar timesteps: sinusoidal frequencies, then a two-layer MLP. */
export class TimestepEmbedder extends nn.Module {
  readonly mlp: torch.nn.Sequential;
  constructor(readonly hiddenSize: number, readonly frequencyEmbeddingSize = 256) {
    super();
    this.mlp = this.registerModule('mlp', new nn.Sequential(
      new nn.Linear(frequencyEmbeddingSize, hiddenSize, true),
      new nn.SiLU(),
      new nn.Linear(hiddenSize, hiddenSize, true),
    ));
  }

  /**
   * [N] timesteps (possibly fractional) -> [N, dim] sinusoidal embedding, [cos | sin], with the
   * frequency table exp(-ln(maxPeriod) * arange(half) / half) computed in float32 as the official code.
   */
  static timestepEmbedding(t: Tensor, dim: number, maxPeriod = 10000): Tensor {
    return torch.scope(() => {
      const half = Math.floor(dim / 2);
      const freqs = torch.arange(0, half, 1, { dtype: 'float32', device: t.device }).mul(-Math.log(maxPeriod)).div(half).exp();
      const args = t.unsqueeze(1).float().mul(freqs.unsqueeze(0));
      let embedding = torch.cat([args.cos(), args.sin()], -1);
      if (dim % 2) embedding = torch.cat([embedding, torch.zerosLike(embedding.slice(1, 0, 1))], -1);
      return embedding;
    });
  }

  forward(t: Tensor): Tensor {
    return torch.scope(() => {
      const freq = TimestepEmbedder.timestepEmbedding(t, this.frequencyEmbeddingSize);
      // A float64 model (exact gradient tests) takes the float32 table in its own dtype; float32 is unchanged.
      const dtype = (this.mlp.at(0) as torch.nn.Linear).weight.dtype;
      return this.mlp.forward(dtype === 'float64' ? freq.to({ dtype }) : freq);
    });
  }
}

/**
 * Embeds class labels. With dropoutProb > 0 the table has one extra row, the null label
 * numClasses, used for classifier-free guidance; in training each label is replaced by it with
 * probability dropoutProb.
 */
export class LabelEmbedder extends nn.Module {
  readonly embedding_table: torch.nn.Embedding;
  constructor(readonly numClasses: number, hiddenSize: number, readonly dropoutProb: number) {
    super();
    const useCfgEmbedding = dropoutProb > 0 ? 1 : 0;
    this.embedding_table = this.registerModule('embedding_table', new nn.Embedding(numClasses + useCfgEmbedding, hiddenSize));
  }

  /** Replaces dropped labels by the null label: at random, or where forceDropIds == 1. */
  tokenDrop(labels: Tensor, forceDropIds?: Tensor | null): Tensor {
    return torch.scope(() => {
      const dropIds = forceDropIds
        ? forceDropIds.eq(1)
        : torch.rand([labels.shape[0]], { device: labels.device }).lt(this.dropoutProb);
      return torch.where(dropIds, this.numClasses, labels);
    });
  }

  forward(labels: Tensor, train: boolean, forceDropIds?: Tensor | null): Tensor {
    return torch.scope(() => {
      const useDropout = this.dropoutProb > 0;
      const ids = (train && useDropout) || forceDropIds ? this.tokenDrop(labels, forceDropIds) : labels;
      return this.embedding_table.forward(ids);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Transformer blocks (timm's Attention and Mlp, and the adaLN-Zero DiT block)
// ---------------------------------------------------------------------------------------------

/** Multi-head self-attention with a fused qkv projection (timm's Attention, qkv_bias=True). */
export class Attention extends nn.Module {
  readonly qkv: torch.nn.Linear;
  readonly proj: torch.nn.Linear;
  readonly headDim: number;
  /** DiffFit scales on the qkv output [3*dim] and the proj output [dim] (Diff-Tuning fork). */
  readonly gamma1: Tensor | null = null;
  readonly gamma2: Tensor | null = null;
  constructor(readonly dim: number, readonly numHeads: number, useGamma = false) {
    super();
    this.headDim = dim / numHeads;
    this.qkv = this.registerModule('qkv', new nn.Linear(dim, dim * 3, true));
    this.proj = this.registerModule('proj', new nn.Linear(dim, dim, true));
    if (useGamma) {
      this.gamma1 = this.registerParameter('gamma1', torch.ones([dim * 3]));
      this.gamma2 = this.registerParameter('gamma2', torch.ones([dim]));
    }
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => {
      const [B, N, C] = x.shape;
      let qkvOut = this.qkv.forward(x);
      if (this.gamma1) qkvOut = this.gamma1.mul(qkvOut);
      const qkv = qkvOut.reshape(B, N, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
      const [q, k, v] = qkv.unbind(0);
      const o = F.scaledDotProductAttention(q, k, v);
      const out = this.proj.forward(o.transpose(1, 2).reshape(B, N, C));
      return this.gamma2 ? this.gamma2.mul(out) : out;
    });
  }
}

/** fc1 -> GELU (tanh approximation) -> fc2 (timm's Mlp as DiT builds it). */
export class Mlp extends nn.Module {
  readonly fc1: torch.nn.Linear;
  readonly act: torch.nn.GELU;
  readonly fc2: torch.nn.Linear;
  constructor(inFeatures: number, hiddenFeatures: number) {
    super();
    this.fc1 = this.registerModule('fc1', new nn.Linear(inFeatures, hiddenFeatures, true));
    this.act = this.registerModule('act', new nn.GELU('tanh'));
    this.fc2 = this.registerModule('fc2', new nn.Linear(hiddenFeatures, inFeatures, true));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.fc2.forward(this.act.forward(this.fc1.forward(x))));
  }
}

/** A DiT block with adaptive layer norm zero (adaLN-Zero) conditioning. */
export class DiTBlock extends nn.Module {
  readonly norm1: torch.nn.LayerNorm;
  readonly attn: Attention;
  readonly norm2: torch.nn.LayerNorm;
  readonly mlp: Mlp;
  readonly adaLN_modulation: torch.nn.Sequential;
  /** DiffFit scales on the attention and MLP residual branches (Diff-Tuning fork). */
  readonly gamma1: Tensor | null = null;
  readonly gamma2: Tensor | null = null;
  constructor(hiddenSize: number, numHeads: number, mlpRatio = 4.0, useGamma = false) {
    super();
    // The fork registers the gammas first among this block's own parameters (state_dict order).
    if (useGamma) {
      this.gamma1 = this.registerParameter('gamma1', torch.ones([hiddenSize]));
      this.gamma2 = this.registerParameter('gamma2', torch.ones([hiddenSize]));
    }
    this.norm1 = this.registerModule('norm1', new nn.LayerNorm(hiddenSize, 1e-6, false));
    this.attn = this.registerModule('attn', new Attention(hiddenSize, numHeads, useGamma));
    this.norm2 = this.registerModule('norm2', new nn.LayerNorm(hiddenSize, 1e-6, false));
    this.mlp = this.registerModule('mlp', new Mlp(hiddenSize, Math.trunc(hiddenSize * mlpRatio)));
    this.adaLN_modulation = this.registerModule('adaLN_modulation',
      new nn.Sequential(new nn.SiLU(), new nn.Linear(hiddenSize, 6 * hiddenSize, true)));
  }
  forward(x: Tensor, c: Tensor): Tensor {
    return torch.scope(() => {
      const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = this.adaLN_modulation.forward(c).chunk(6, 1);
      // gate * gamma * branch, multiplied left to right as the fork does.
      const gA = this.gamma1 ? gateMsa.unsqueeze(1).mul(this.gamma1) : gateMsa.unsqueeze(1);
      const h = x.add(gA.mul(this.attn.forward(modulate(this.norm1.forward(x), shiftMsa, scaleMsa))));
      const gM = this.gamma2 ? gateMlp.unsqueeze(1).mul(this.gamma2) : gateMlp.unsqueeze(1);
      return h.add(gM.mul(this.mlp.forward(modulate(this.norm2.forward(h), shiftMlp, scaleMlp))));
    });
  }
}

/** The final adaLN-modulated layer norm and linear map back to patch pixels. */
export class FinalLayer extends nn.Module {
  readonly norm_final: torch.nn.LayerNorm;
  readonly linear: torch.nn.Linear;
  readonly adaLN_modulation: torch.nn.Sequential;
  constructor(hiddenSize: number, patchSize: number, outChannels: number) {
    super();
    this.norm_final = this.registerModule('norm_final', new nn.LayerNorm(hiddenSize, 1e-6, false));
    this.linear = this.registerModule('linear', new nn.Linear(hiddenSize, patchSize * patchSize * outChannels, true));
    this.adaLN_modulation = this.registerModule('adaLN_modulation',
      new nn.Sequential(new nn.SiLU(), new nn.Linear(hiddenSize, 2 * hiddenSize, true)));
  }
  forward(x: Tensor, c: Tensor): Tensor {
    return torch.scope(() => {
      const [shift, scale] = this.adaLN_modulation.forward(c).chunk(2, 1);
      return this.linear.forward(modulate(this.norm_final.forward(x), shift, scale));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// 2-D sine-cosine position embedding (float64, as the official numpy code)
// ---------------------------------------------------------------------------------------------

/** [pos.length, dim] in float64: [sin(pos * omega) | cos(pos * omega)], omega = 1 / 10000^(i / (dim/2)). */
function sincos1d(dim: number, pos: Float64Array): Float64Array {
  const half = dim / 2;
  const omega = new Float64Array(half);
  for (let i = 0; i < half; i++) omega[i] = 1 / Math.pow(10000, i / half);
  const out = new Float64Array(pos.length * dim);
  for (let m = 0; m < pos.length; m++) {
    for (let d = 0; d < half; d++) {
      const v = pos[m] * omega[d];
      out[m * dim + d] = Math.sin(v);
      out[m * dim + half + d] = Math.cos(v);
    }
  }
  return out;
}

/**
 * The fixed [gridSize^2, embedDim] position table in float64, tokens in row-major (h, w) order.
 * The first half of each row encodes the w (column) coordinate, the second half h (row), as
 * get_2d_sincos_pos_embed does (its meshgrid puts w first).
 */
export function get2dSincosPosEmbed(embedDim: number, gridSize: number): Float64Array {
  if (embedDim % 4) throw new Error(`get2dSincosPosEmbed: embedDim ${embedDim} must be a multiple of 4`);
  const T = gridSize * gridSize;
  const wPos = new Float64Array(T);
  const hPos = new Float64Array(T);
  for (let i = 0; i < gridSize; i++) {
    for (let j = 0; j < gridSize; j++) {
      hPos[i * gridSize + j] = i;
      wPos[i * gridSize + j] = j;
    }
  }
  const half = embedDim / 2;
  const embW = sincos1d(half, wPos);
  const embH = sincos1d(half, hPos);
  const out = new Float64Array(T * embedDim);
  for (let t = 0; t < T; t++) {
    out.set(embW.subarray(t * half, (t + 1) * half), t * embedDim);
    out.set(embH.subarray(t * half, (t + 1) * half), t * embedDim + half);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

export interface DiTOptions {
  /** Run the official from-scratch initialisation (default true, as the official constructor). */
  initialize?: boolean;
}

export interface ForwardOptions {
  /** 1 where a label must be replaced by the null label (also outside training). */
  forceDropIds?: Tensor | null;
}

export interface CfgOptions {
  /** Which output channels get guidance: the official 3, or all inChannels (the eps half). */
  guideChannels?: 3 | 'all' | number;
}

/** Diffusion model with a Transformer backbone. */
export class DiT extends nn.Module {
  readonly config: Readonly<DiTConfig>;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly patchSize: number;
  readonly numHeads: number;
  readonly x_embedder: PatchEmbed;
  readonly t_embedder: TimestepEmbedder;
  readonly y_embedder: LabelEmbedder;
  readonly pos_embed: Tensor;
  readonly blocks: torch.nn.ModuleList<DiTBlock>;
  readonly final_layer: FinalLayer;
  /**
   * Gradient checkpointing of the blocks in training forwards (training mode, grad enabled): they
   * keep only their inputs and are recomputed in backwardCheckpointed(), which must follow every
   * loss.backward(). Costs one more forward of the blocks; gradients are unchanged.
   */
  gradCheckpointing = false;
  /** Checkpointed forwards whose second phase is still due. */
  private pendingChains: CheckpointedChain[] = [];

  constructor(config: Partial<DiTConfig> = {}, o: DiTOptions = {}) {
    super();
    const c: DiTConfig = { ...DIT_DEFAULTS, ...config };
    validate(c);
    this.config = Object.freeze(c);
    this.inChannels = c.inChannels;
    this.outChannels = c.learnSigma ? c.inChannels * 2 : c.inChannels;
    this.patchSize = c.patchSize;
    this.numHeads = c.numHeads;

    // Construction order follows the official constructor, so default draws line up with PyTorch's.
    this.x_embedder = this.registerModule('x_embedder', new PatchEmbed(c.inputSize, c.patchSize, c.inChannels, c.hiddenSize));
    this.t_embedder = this.registerModule('t_embedder', new TimestepEmbedder(c.hiddenSize));
    this.y_embedder = this.registerModule('y_embedder', new LabelEmbedder(c.numClasses, c.hiddenSize, c.classDropoutProb));
    const numPatches = this.x_embedder.numPatches;
    // Fixed sin-cos embedding: a parameter (so it is in the state dict) that is not trained.
    this.pos_embed = this.registerParameter('pos_embed', this.posEmbedValue(), false);
    this.blocks = this.registerModule('blocks',
      new nn.ModuleList(Array.from({ length: c.depth },
        (_, i) => new DiTBlock(c.hiddenSize, c.numHeads, c.mlpRatio, c.useGamma && i < gammaDepth(c)))));
    this.final_layer = this.registerModule('final_layer', new FinalLayer(c.hiddenSize, c.patchSize, this.outChannels));
    if (this.pos_embed.shape[1] !== numPatches) throw new Error('DiT: position table does not match the patch grid');
    if (o.initialize ?? true) this.initializeWeights();
  }

  /** [1, T, hidden] float32, computed in float64 then cast as the official code does. */
  private posEmbedValue(): Tensor {
    const grid = this.x_embedder.gridSize;
    const table = get2dSincosPosEmbed(this.config.hiddenSize, grid);
    return torch.fromTypedArray(table, [1, grid * grid, this.config.hiddenSize], { dtype: 'float32' });
  }

  /** The official from-scratch initialisation (initialize_weights). */
  initializeWeights(): void {
    torch.noGrad(() => torch.scope(() => {
      // Transformer layers: xavier-uniform weights, zero biases (module order, as nn.Module.apply).
      for (const [, m] of this.namedModules()) {
        if (m instanceof nn.Linear) {
          nn.init.xavierUniform_(m.weight);
          if (m.bias) nn.init.zeros_(m.bias);
        }
      }
      // Fixed sin-cos position embedding.
      this.pos_embed.copy_(this.posEmbedValue());
      // Patch embedding like nn.Linear: xavier on the [out, in*k*k] view.
      const w = this.x_embedder.proj.weight;
      nn.init.xavierUniform_(w.view(w.shape[0], -1));
      if (this.x_embedder.proj.bias) nn.init.zeros_(this.x_embedder.proj.bias);
      // Label embedding table.
      nn.init.normal_(this.y_embedder.embedding_table.weight, 0, 0.02);
      // Timestep embedding MLP.
      nn.init.normal_((this.t_embedder.mlp.at(0) as torch.nn.Linear).weight, 0, 0.02);
      nn.init.normal_((this.t_embedder.mlp.at(2) as torch.nn.Linear).weight, 0, 0.02);
      // Zero-out adaLN modulation layers in DiT blocks.
      for (const block of this.blocks) zeroLinear(block.adaLN_modulation.at(1) as torch.nn.Linear);
      // Zero-out output layers.
      zeroLinear(this.final_layer.adaLN_modulation.at(1) as torch.nn.Linear);
      zeroLinear(this.final_layer.linear);
    }));
  }

  /** [N, T, p*p*C] -> [N, C, H, W] ('nhwpqc->nchpwq'). */
  unpatchify(x: Tensor): Tensor {
    const c = this.outChannels;
    const p = this.patchSize;
    const h = Math.round(Math.sqrt(x.shape[1]));
    const w = h;
    if (h * w !== x.shape[1]) throw new Error(`unpatchify: ${x.shape[1]} tokens do not form a square grid`);
    return torch.scope(() => x.reshape(x.shape[0], h, w, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(x.shape[0], c, h * p, w * p));
  }

  /**
   * x: [N, C, H, W] images or latents, t: [N] diffusion timesteps, y: [N] int64 class labels.
   * Returns [N, outChannels, H, W] (eps, then the variance logits when learnSigma).
   */
  forward(x: Tensor, t: Tensor, y: Tensor, o: ForwardOptions = {}): Tensor {
    this.checkCheckpointedBackwardDone();
    return torch.scope(() => {
      let h = this.x_embedder.forward(x).add(this.pos_embed); // [N, T, D]
      const te = this.t_embedder.forward(t); // [N, D]
      const ye = this.y_embedder.forward(y, this.training, o.forceDropIds); // [N, D] (label dropout drawn once, here)
      const c = te.add(ye);
      if (this.gradCheckpointing && this.training && torch.isGradEnabled()) {
        const chain = new CheckpointedChain([...this.blocks], h, c);
        this.pendingChains.push(chain);
        return this.unpatchify(this.final_layer.forward(chain.output, chain.cond));
      }
      for (const block of this.blocks) {
        const next = block.forward(h, c);
        h.dispose();
        h = next;
      }
      const out = this.final_layer.forward(h, c); // [N, T, p*p*outChannels]
      return this.unpatchify(out);
    });
  }

  /**
   * Classifier-free guidance as the official forward_with_cfg: the first half of the batch is
   * run twice (y holds the conditional labels, then the null labels), guidance
   * uncond + s * (cond - uncond) is applied to the first 3 output channels only (official) and
   * written to both halves; the remaining channels pass through unguided.
   */
  forwardWithCfg(x: Tensor, t: Tensor, y: Tensor, cfgScale: number, o: CfgOptions = {}): Tensor {
    const g = o.guideChannels === undefined ? 3 : o.guideChannels === 'all' ? this.inChannels : o.guideChannels;
    return cfgModel((xx, tt, yy) => this.forward(xx, tt, yy), { guideChannels: g })(x, t, { y, cfgScale });
  }

  /**
   * The second phase of gradient checkpointing, after loss.backward(): recomputes the blocks of
   * every checkpointed forward since the last call, backpropagates through them and then through
   * the embedders, and frees what those forwards kept. Does nothing when none is pending.
   */
  backwardCheckpointed(): void {
    const chains = this.pendingChains;
    this.pendingChains = [];
    try {
      for (const chain of chains.reverse()) chain.backward();
    } finally {
      for (const chain of chains) chain.dispose();
    }
  }

  /** A forward after a backward whose second phase never ran would leave the blocks without gradients. */
  private checkCheckpointedBackwardDone(): void {
    if (this.pendingChains.some((chain) => chain.hasGradient())) {
      throw new Error('DiT: gradient checkpointing is on and loss.backward() ran, but model.backwardCheckpointed() was not ' +
        'called after it: the blocks and embedders have no gradients yet (call it after every backward, before the next forward)');
    }
  }

}

function zeroLinear(l: torch.nn.Linear): void {
  nn.init.zeros_(l.weight);
  if (l.bias) nn.init.zeros_(l.bias);
}

/** Builds a named official model ('DiT-XL/2', ...) with per-use overrides (inputSize, numClasses, ...). */
export function createDiT(name: DiTModelName, overrides: Partial<DiTConfig> = {}, o: DiTOptions = {}): DiT {
  return new DiT(ditConfig(name, overrides), o);
}
