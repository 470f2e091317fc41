// Loading the CLIP text encoder from the files users have: a transformers folder (config.json +
// model.safetensors / pytorch_model.bin, also a pipeline's text_encoder/), a lone weights file, a
// full CLIPModel checkpoint (its text tower), or an original Stable Diffusion checkpoint whose
// text encoder sits under cond_stage_model.transformer. (the ldm layout: same names behind a
// prefix). Every file goes through loadCheckpoint, which never executes code.
import * as torch from '../../torch';
import { loadCheckpoint } from '../../torch/serialization';
import { Tensor } from '../../torch/tensor';
import { readJsonObject } from '../json-file';
import { LoadModelOptions, locateWeights, WeightsFileRules } from './weights-files';
import { ClipActivation, ClipTextConfig, ClipTextModel, CLIP_TEXT_DEFAULTS, SD15_CLIP_TEXT_CONFIG } from './clip-text';

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

const FIELDS: [keyof ClipTextConfig, string][] = [
  ['vocabSize', 'vocab_size'], ['hiddenSize', 'hidden_size'], ['intermediateSize', 'intermediate_size'],
  ['numHiddenLayers', 'num_hidden_layers'], ['numAttentionHeads', 'num_attention_heads'],
  ['maxPositionEmbeddings', 'max_position_embeddings'], ['hiddenAct', 'hidden_act'], ['layerNormEps', 'layer_norm_eps'],
  ['padTokenId', 'pad_token_id'], ['bosTokenId', 'bos_token_id'], ['eosTokenId', 'eos_token_id'],
];

/**
 * transformers' CLIPTextConfig object (or a CLIPConfig, whose text_config is used) -> ClipTextConfig,
 * CLIPTextConfig's defaults for absent fields; `where` names the source in errors.
 */
export function clipTextConfigFromTransformers(jsonIn: Record<string, unknown>, where: string): ClipTextConfig {
  let json = jsonIn;
  if (json.text_config !== undefined) {
    if (typeof json.text_config !== 'object' || json.text_config === null) throw new Error(`${where}: 'text_config' must be an object`);
    json = json.text_config as Record<string, unknown>;
    where = `${where} (text_config)`;
  }
  if (json.model_type !== undefined && json.model_type !== 'clip_text_model') {
    throw new Error(`${where}: model_type is ${JSON.stringify(json.model_type)}, expected "clip_text_model"`);
  }
  const out = { ...CLIP_TEXT_DEFAULTS } as Record<keyof ClipTextConfig, unknown>;
  for (const [field, key] of FIELDS) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    if (field === 'hiddenAct') {
      if (typeof v !== 'string') throw new Error(`${where}: 'hidden_act' must be a string, got ${JSON.stringify(v)}`);
    } else if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new Error(`${where}: '${key}' must be a number, got ${JSON.stringify(v)}`);
    }
    out[field] = v;
  }
  const config = out as ClipTextConfig;
  for (const [field, key] of FIELDS) {
    if (field === 'hiddenAct' || field === 'layerNormEps') continue;
    if (!Number.isInteger(config[field])) throw new Error(`${where}: '${key}' must be an integer, got ${config[field]}`);
  }
  const acts: ClipActivation[] = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh'];
  if (!acts.includes(config.hiddenAct)) throw new Error(`${where}: 'hidden_act' ${JSON.stringify(config.hiddenAct)} is not supported (${acts.join(', ')})`);
  return config;
}

export function readClipTextConfig(file: string): ClipTextConfig {
  return clipTextConfigFromTransformers(readJsonObject(file), file);
}

// ---------------------------------------------------------------------------------------------
// Key layouts
// ---------------------------------------------------------------------------------------------

/** Where full checkpoints keep the CLIP-L text encoder: SD 1.x (ldm) and SDXL's first embedder. */
export const LDM_CLIP_PREFIXES = ['cond_stage_model.transformer.', 'conditioner.embedders.0.transformer.'] as const;

/** The non-persistent position_ids buffer old checkpoints contain (absent from today's state_dict). */
const POSITION_IDS = /(^|\.)embeddings\.position_ids$/;

export interface ClipTextWeights {
  /** transformers CLIPTextModel keys (text_model.*). */
  stateDict: Map<string, Tensor>;
  layout: 'transformers' | 'ldm' | 'clip-model';
  warnings: string[];
}

/**
 * A state dict of any supported layout renamed to CLIPTextModel's keys: the ldm prefix stripped
 * (other models of a full checkpoint dropped), a CLIPModel's vision tower and projections
 * dropped, position_ids ignored, and keys saved from a bare CLIPTextTransformer given their
 * `text_model.` prefix. Tensors not kept are disposed.
 */
export function toClipTextStateDict(sd: Map<string, Tensor>, where: string): ClipTextWeights {
  const warnings: string[] = [];
  let layout: ClipTextWeights['layout'] = 'transformers';
  let source = sd;
  const prefix = LDM_CLIP_PREFIXES.find((p) => [...sd.keys()].some((k) => k.startsWith(p)));
  if (prefix) {
    layout = 'ldm';
    source = new Map();
    for (const [k, t] of sd) {
      if (k.startsWith(prefix)) source.set(k.slice(prefix.length), t);
      else t.dispose();
    }
    warnings.push(`${where}: full checkpoint: using its ${source.size} ${prefix}* tensors, ignoring ${sd.size - source.size} others`);
  }
  const out = new Map<string, Tensor>();
  const dropped: string[] = [];
  for (const [k, t] of source) {
    if (POSITION_IDS.test(k)) { t.dispose(); continue; }
    if (k.startsWith('text_model.')) out.set(k, t);
    else if (/^(embeddings|encoder|final_layer_norm)\./.test(k)) out.set(`text_model.${k}`, t);
    else { dropped.push(k); t.dispose(); }
  }
  if (dropped.length) {
    if (layout === 'transformers' && dropped.some((k) => k.startsWith('vision_model.'))) layout = 'clip-model';
    warnings.push(`${where}: ignoring ${dropped.length} tensors outside the text encoder (${dropped.slice(0, 3).join(', ')}${dropped.length > 3 ? ', ...' : ''})`);
  }
  if (out.size === 0) {
    throw new Error(`${where}: no CLIP text encoder tensors (expected text_model.* keys, or ${LDM_CLIP_PREFIXES.join(' / ')}* in a full checkpoint)`);
  }
  return { stateDict: out, layout, warnings };
}

/**
 * The architecture of a state dict without a config.json: only SD 1.x's text encoder is known by
 * its shapes (its heads and activation are not in the weights), anything else needs the config.
 */
export function inferClipTextConfig(sd: Map<string, Tensor>, where: string): ClipTextConfig {
  const shape = (k: string): number[] | undefined => sd.get(k)?.shape;
  let layers = 0;
  while (sd.has(`text_model.encoder.layers.${layers}.self_attn.q_proj.weight`)) layers++;
  const c = SD15_CLIP_TEXT_CONFIG;
  const tok = shape('text_model.embeddings.token_embedding.weight');
  const pos = shape('text_model.embeddings.position_embedding.weight');
  const fc1 = shape('text_model.encoder.layers.0.mlp.fc1.weight');
  if (tok?.join() === `${c.vocabSize},${c.hiddenSize}` && pos?.[0] === c.maxPositionEmbeddings
    && fc1?.[0] === c.intermediateSize && layers === c.numHiddenLayers) return { ...c };
  throw new Error(`${where}: no config.json, and the weights are not SD 1.x's CLIP ViT-L/14 text encoder ` +
    `(token_embedding [${tok}], ${layers} layers): pass the text encoder's config.json`);
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/** transformers' weight files of a CLIPTextModel, in a text_encoder/ folder of a pipeline. */
const FILE_RULES: WeightsFileRules = {
  what: 'CLIP text encoder',
  sub: 'text_encoder',
  weightFiles: ['model.safetensors', 'pytorch_model.bin', 'model.fp16.safetensors', 'pytorch_model.fp16.bin'],
  describes: (file) => {
    try {
      const type = readJsonObject(file).model_type;
      return type === 'clip_text_model' || type === 'clip';
    } catch {
      return false;
    }
  },
};

/** Loader options; without config or config.json, SD 1.x's architecture is used when the shapes match. */
export type LoadClipTextOptions = LoadModelOptions<ClipTextConfig>;

/**
 * Builds a CLIPTextModel from a transformers folder or any supported weights file and loads it
 * strictly: a missing, unexpected or mis-shaped tensor throws an error naming the file and keys.
 */
export function loadClipTextModel(pathOrDir: string, o: LoadClipTextOptions = {}): ClipTextModel {
  const { weights, configFile } = locateWeights(pathOrDir, FILE_RULES, { configFile: o.configFile, configGiven: !!o.config });
  const { stateDict: raw, warnings: readerWarnings } = loadCheckpoint(weights, { skipUnknown: true });
  const loaded = toClipTextStateDict(raw, weights);
  for (const w of [...readerWarnings, ...loaded.warnings]) (o.onWarning ?? console.warn)(w);
  try {
    const config = o.config ?? (configFile ? readClipTextConfig(configFile) : inferClipTextConfig(loaded.stateDict, weights));
    // No random initial weights: every tensor is loaded next, strictly.
    const model = torch.nn.init.skipInit(() => new ClipTextModel(config));
    const what = loaded.layout === 'ldm' ? `${weights} (ldm layout, prefix removed)` : weights;
    model.loadStateDict(loaded.stateDict, { what });
    if (o.device || o.dtype) model.to({ device: o.device, dtype: o.dtype });
    return model;
  } finally {
    for (const t of loaded.stateDict.values()) t.dispose();
  }
}
