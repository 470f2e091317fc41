// The CLIP text encoder of Stable Diffusion: transformers' CLIPTextModel (v4.47), written from its
// published architecture with transformers' module and parameter names
// (text_model.embeddings.token_embedding.weight, text_model.encoder.layers.0.self_attn.q_proj.weight,
// ...), so its model.safetensors / pytorch_model.bin load one to one. Pre-LayerNorm transformer
// layers under a causal mask, a final LayerNorm, and the pooled output taken at the EOS token.
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import type { DType } from '../../torch';

const { nn, F } = torch;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

export type ClipActivation = 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh';

/** transformers' CLIPTextConfig fields that shape the model (camelCased). */
export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: ClipActivation;
  layerNormEps: number;
  padTokenId: number;
  bosTokenId: number;
  eosTokenId: number;
}

/** CLIPTextConfig's own defaults (transformers 4.47), for fields a config.json leaves out. */
export const CLIP_TEXT_DEFAULTS: Readonly<ClipTextConfig> = Object.freeze({
  vocabSize: 49408,
  hiddenSize: 512,
  intermediateSize: 2048,
  numHiddenLayers: 12,
  numAttentionHeads: 8,
  maxPositionEmbeddings: 77,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
  padTokenId: 1,
  bosTokenId: 49406,
  eosTokenId: 49407,
});

/** stable-diffusion-v1-5 text_encoder/config.json (openai/clip-vit-large-patch14's text tower). */
export const SD15_CLIP_TEXT_CONFIG: Readonly<ClipTextConfig> = Object.freeze({
  vocabSize: 49408,
  hiddenSize: 768,
  intermediateSize: 3072,
  numHiddenLayers: 12,
  numAttentionHeads: 12,
  maxPositionEmbeddings: 77,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
  padTokenId: 1,
  // Legacy values of that config: the pooled output then takes the argmax token (49407 = EOS).
  bosTokenId: 0,
  eosTokenId: 2,
});

const ACTIVATIONS: readonly ClipActivation[] = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh'];

function validate(c: ClipTextConfig): void {
  const ints: (keyof ClipTextConfig)[] = ['vocabSize', 'hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads', 'maxPositionEmbeddings'];
  for (const k of ints) {
    if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new Error(`CLIP text config: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.hiddenSize % c.numAttentionHeads) {
    throw new Error(`CLIP text config: hiddenSize ${c.hiddenSize} is not divisible by numAttentionHeads ${c.numAttentionHeads}`);
  }
  if (!ACTIVATIONS.includes(c.hiddenAct)) {
    throw new Error(`CLIP text config: hiddenAct '${c.hiddenAct}' is not supported (${ACTIVATIONS.join(', ')})`);
  }
  if (!(c.layerNormEps > 0)) throw new Error(`CLIP text config: layerNormEps must be positive, got ${c.layerNormEps}`);
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/** The most negative finite value of a float dtype (torch.finfo(dtype).min), transformers' mask value. */
export function finfoMin(dtype: DType): number {
  switch (dtype) {
    case 'float32': return -3.4028234663852886e38;
    case 'float64': return -Number.MAX_VALUE;
    case 'float16': return -65504;
    case 'bfloat16': return -3.3895313892515355e38;
    default: throw new Error(`finfoMin: ${dtype} is not a floating dtype`);
  }
}

function activate(x: Tensor, act: ClipActivation): Tensor {
  switch (act) {
    // QuickGELUActivation: x * sigmoid(1.702 x) (what OpenAI's CLIP was trained with).
    case 'quick_gelu': return torch.scope(() => x.mul(x.mul(1.702).sigmoid()));
    case 'gelu': return F.gelu(x);
    case 'gelu_new': case 'gelu_pytorch_tanh': return F.gelu(x, 'tanh');
  }
}

export class ClipTextEmbeddings extends nn.Module {
  readonly token_embedding: torch.nn.Embedding;
  readonly position_embedding: torch.nn.Embedding;
  constructor(readonly config: ClipTextConfig) {
    super();
    this.token_embedding = this.registerModule('token_embedding', new nn.Embedding(config.vocabSize, config.hiddenSize));
    this.position_embedding = this.registerModule('position_embedding', new nn.Embedding(config.maxPositionEmbeddings, config.hiddenSize));
  }
  /** token_embedding(ids) + position_embedding(0..L-1); ids int64 [B, L]. */
  forward(inputIds: Tensor): Tensor {
    return torch.scope(() => {
      const L = inputIds.size(-1);
      const positions = torch.arange(0, L, 1, { device: inputIds.device }).unsqueeze(0);
      return this.token_embedding.forward(inputIds).add(this.position_embedding.forward(positions));
    });
  }
}

/** Multi-head self-attention with separate k/v/q/out projections (CLIPAttention, eager). */
export class ClipAttention extends nn.Module {
  // Registration order k, v, q, out is transformers' state_dict order.
  readonly k_proj: torch.nn.Linear;
  readonly v_proj: torch.nn.Linear;
  readonly q_proj: torch.nn.Linear;
  readonly out_proj: torch.nn.Linear;
  readonly headDim: number;
  constructor(readonly hiddenSize: number, readonly numHeads: number) {
    super();
    this.headDim = hiddenSize / numHeads;
    this.k_proj = this.registerModule('k_proj', new nn.Linear(hiddenSize, hiddenSize));
    this.v_proj = this.registerModule('v_proj', new nn.Linear(hiddenSize, hiddenSize));
    this.q_proj = this.registerModule('q_proj', new nn.Linear(hiddenSize, hiddenSize));
    this.out_proj = this.registerModule('out_proj', new nn.Linear(hiddenSize, hiddenSize));
  }
  /** x [B, L, D]; mask additive, broadcastable to [B, 1, L, L]. */
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return torch.scope(() => {
      const [B, L, D] = x.shape;
      const heads = (t: Tensor): Tensor => t.reshape(B, L, this.numHeads, this.headDim).transpose(1, 2);
      // transformers scales the query before the product (q_proj(x) * head_dim^-0.5).
      const q = heads(this.q_proj.forward(x).mul(Math.pow(this.headDim, -0.5)));
      const k = heads(this.k_proj.forward(x));
      const v = heads(this.v_proj.forward(x));
      let scores = q.matmul(k.transpose(-1, -2));
      if (mask) scores = scores.add(mask);
      const out = F.softmax(scores, -1).matmul(v);
      return this.out_proj.forward(out.transpose(1, 2).reshape(B, L, D));
    });
  }
}

export class ClipMlp extends nn.Module {
  readonly fc1: torch.nn.Linear;
  readonly fc2: torch.nn.Linear;
  constructor(hiddenSize: number, intermediateSize: number, readonly act: ClipActivation) {
    super();
    this.fc1 = this.registerModule('fc1', new nn.Linear(hiddenSize, intermediateSize));
    this.fc2 = this.registerModule('fc2', new nn.Linear(intermediateSize, hiddenSize));
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.fc2.forward(activate(this.fc1.forward(x), this.act)));
  }
}

/** x + attn(ln1(x)), then x + mlp(ln2(x)) (CLIPEncoderLayer). */
export class ClipEncoderLayer extends nn.Module {
  readonly self_attn: ClipAttention;
  readonly layer_norm1: torch.nn.LayerNorm;
  readonly mlp: ClipMlp;
  readonly layer_norm2: torch.nn.LayerNorm;
  constructor(c: ClipTextConfig) {
    super();
    this.self_attn = this.registerModule('self_attn', new ClipAttention(c.hiddenSize, c.numAttentionHeads));
    this.layer_norm1 = this.registerModule('layer_norm1', new nn.LayerNorm(c.hiddenSize, c.layerNormEps));
    this.mlp = this.registerModule('mlp', new ClipMlp(c.hiddenSize, c.intermediateSize, c.hiddenAct));
    this.layer_norm2 = this.registerModule('layer_norm2', new nn.LayerNorm(c.hiddenSize, c.layerNormEps));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return torch.scope(() => {
      const h = x.add(this.self_attn.forward(this.layer_norm1.forward(x), mask));
      return h.add(this.mlp.forward(this.layer_norm2.forward(h)));
    });
  }
}

export class ClipEncoder extends nn.Module {
  readonly layers: torch.nn.ModuleList<ClipEncoderLayer>;
  constructor(c: ClipTextConfig) {
    super();
    this.layers = this.registerModule('layers', new nn.ModuleList(Array.from({ length: c.numHiddenLayers }, () => new ClipEncoderLayer(c))));
  }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

export interface ClipTextOutput {
  /** [B, L, D], after final_layer_norm: what Stable Diffusion's UNet cross-attends to. */
  lastHiddenState: Tensor;
  /** [B, D]: lastHiddenState at the EOS token of each row. */
  poolerOutput: Tensor;
  /** With outputHiddenStates: the embeddings and every layer's output (before final_layer_norm), numHiddenLayers + 1 entries. */
  hiddenStates?: Tensor[];
}

export interface ClipTextForwardOptions {
  /** [B, L], 1 for tokens to attend to, 0 for padding (SD pipelines pass none: causal mask only). */
  attentionMask?: Tensor | null;
  /** Also return every layer's hidden state (for "CLIP skip": hiddenStates[-2] through final_layer_norm). */
  outputHiddenStates?: boolean;
}

export class ClipTextTransformer extends nn.Module {
  readonly embeddings: ClipTextEmbeddings;
  readonly encoder: ClipEncoder;
  readonly final_layer_norm: torch.nn.LayerNorm;
  constructor(readonly config: ClipTextConfig) {
    super();
    this.embeddings = this.registerModule('embeddings', new ClipTextEmbeddings(config));
    this.encoder = this.registerModule('encoder', new ClipEncoder(config));
    this.final_layer_norm = this.registerModule('final_layer_norm', new nn.LayerNorm(config.hiddenSize, config.layerNormEps));
  }

  /** The additive [B|1, 1, L, L] mask: finfo.min above the diagonal, and on padding keys when a mask is given. */
  private additiveMask(L: number, dtype: DType, device: torch.Device, attentionMask: Tensor | null): Tensor {
    return torch.scope(() => {
      const min = finfoMin(dtype);
      const causal = torch.full([L, L], min, { dtype, device }).triu(1).reshape(1, 1, L, L);
      if (!attentionMask) return causal;
      if (attentionMask.ndim !== 2 || attentionMask.size(1) !== L) {
        throw new Error(`CLIP text model: attentionMask must be [batch, ${L}], got [${attentionMask.shape}]`);
      }
      const B = attentionMask.size(0);
      const padding = attentionMask.eq(0).to({ dtype, device }).mul(min).reshape(B, 1, 1, L);
      // The sum of two finfo.min is -inf on masked-and-causal entries: softmax still gives exactly 0.
      return causal.add(padding);
    });
  }

  forward(inputIds: Tensor, o: ClipTextForwardOptions = {}): ClipTextOutput {
    if (inputIds.ndim !== 2) throw new Error(`CLIP text model: input ids must be [batch, length], got [${inputIds.shape}]`);
    const L = inputIds.size(1);
    if (L > this.config.maxPositionEmbeddings) {
      throw new Error(`CLIP text model: ${L} tokens exceed maxPositionEmbeddings ${this.config.maxPositionEmbeddings}`);
    }
    return torch.scope(() => {
      const ids = inputIds.dtype === 'int64' ? inputIds : inputIds.long();
      let h = this.embeddings.forward(ids);
      const mask = this.additiveMask(L, h.dtype, h.device, o.attentionMask ?? null);
      const hiddenStates = o.outputHiddenStates ? [h] : undefined;
      for (const layer of this.encoder.layers) {
        h = layer.forward(h, mask);
        hiddenStates?.push(h);
      }
      const lastHiddenState = this.final_layer_norm.forward(h);
      const rows = torch.arange(0, ids.size(0), 1, { device: ids.device });
      const poolerOutput = lastHiddenState.index([rows, this.eosPositions(ids)]);
      return hiddenStates ? { lastHiddenState, poolerOutput, hiddenStates } : { lastHiddenState, poolerOutput };
    });
  }

  /**
   * Where each row's pooled token is (transformers 4.47): the first eosTokenId, except for the
   * legacy eos_token_id 2 of SD's config, where it is the first highest id (49407 = EOS for the
   * CLIP tokenizer). Both give the first EOS for tokenizer output.
   */
  eosPositions(ids: Tensor): Tensor {
    return torch.scope(() => (this.config.eosTokenId === 2 ? ids.argmax(-1) : ids.eq(this.config.eosTokenId).int().argmax(-1)));
  }
}

/** transformers' CLIPTextModel: the text transformer under `text_model.`. */
export class ClipTextModel extends nn.Module {
  readonly text_model: ClipTextTransformer;
  readonly config: ClipTextConfig;
  constructor(config: Partial<ClipTextConfig> = {}) {
    super();
    this.config = { ...CLIP_TEXT_DEFAULTS, ...config };
    validate(this.config);
    this.text_model = this.registerModule('text_model', new ClipTextTransformer(this.config));
  }
  forward(inputIds: Tensor, o: ClipTextForwardOptions = {}): ClipTextOutput {
    return this.text_model.forward(inputIds, o);
  }
}
