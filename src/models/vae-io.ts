// Loading the Stable Diffusion VAE from the files users have: a diffusers folder
// (config.json + diffusion_pytorch_model.safetensors/.bin, also inside a pipeline's vae/), a lone
// diffusers-layout weights file, or the original CompVis/ldm layout (a standalone VAE .ckpt/.pt
// such as vae-ft-ema-560000-ema-pruned.ckpt, or a full SD checkpoint whose VAE keys start with
// first_stage_model.). Every file goes through loadCheckpoint, which never executes code.
import { loadCheckpoint } from '../torch/serialization';
import { DType } from '../torch/dtype';
import { Device, Tensor } from '../torch/tensor';
import { AutoencoderKL, VaeConfig, VAE_SCALING_FACTOR } from './vae';
import { readJsonObject } from './json-file';
import { locateWeights, resolveWeightsFolder, WeightsFileRules } from './sd/weights-files';

// ---------------------------------------------------------------------------------------------
// diffusers config.json
// ---------------------------------------------------------------------------------------------

/** diffusers' AutoencoderKL constructor defaults, for fields a config.json leaves out. */
const DIFFUSERS_DEFAULTS = {
  in_channels: 3, out_channels: 3, block_out_channels: [64], layers_per_block: 1, latent_channels: 4,
  norm_num_groups: 32, sample_size: 32, scaling_factor: VAE_SCALING_FACTOR, shift_factor: null,
  use_quant_conv: true, use_post_quant_conv: true, mid_block_add_attention: true, act_fn: 'silu',
} as const;

/** diffusers' AutoencoderKL config object -> VaeConfig; `where` names the source in errors. */
export function vaeConfigFromDiffusers(json: Record<string, unknown>, where: string): VaeConfig {
  if (json._class_name !== undefined && json._class_name !== 'AutoencoderKL') {
    throw new Error(`${where}: _class_name is ${JSON.stringify(json._class_name)}, expected "AutoencoderKL"`);
  }
  const get = (k: keyof typeof DIFFUSERS_DEFAULTS): unknown => (json[k] === undefined ? DIFFUSERS_DEFAULTS[k] : json[k]);
  const int = (k: keyof typeof DIFFUSERS_DEFAULTS): number => {
    const v = get(k);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${where}: '${k}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (k: keyof typeof DIFFUSERS_DEFAULTS): boolean => {
    const v = get(k);
    if (typeof v !== 'boolean') throw new Error(`${where}: '${k}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const channels = get('block_out_channels');
  if (!Array.isArray(channels) || channels.length === 0 || !channels.every((c) => Number.isInteger(c) && c > 0)) {
    throw new Error(`${where}: 'block_out_channels' must be a non-empty list of positive integers, got ${JSON.stringify(channels)}`);
  }
  checkBlockTypes(json, 'down_block_types', 'DownEncoderBlock2D', channels.length, where);
  checkBlockTypes(json, 'up_block_types', 'UpDecoderBlock2D', channels.length, where);
  const act = get('act_fn');
  if (act !== 'silu' && act !== 'swish') throw new Error(`${where}: 'act_fn' ${JSON.stringify(act)} is not supported (only "silu")`);
  const scaling = get('scaling_factor');
  if (typeof scaling !== 'number' || !(scaling > 0)) throw new Error(`${where}: 'scaling_factor' must be a positive number, got ${JSON.stringify(scaling)}`);
  const shift = get('shift_factor');
  if (shift !== null && typeof shift !== 'number') throw new Error(`${where}: 'shift_factor' must be a number or null, got ${JSON.stringify(shift)}`);
  const sampleSize = get('sample_size');
  return {
    inChannels: int('in_channels'), outChannels: int('out_channels'), blockOutChannels: channels as number[],
    layersPerBlock: int('layers_per_block'), latentChannels: int('latent_channels'), normNumGroups: int('norm_num_groups'),
    sampleSize: Array.isArray(sampleSize) ? Number(sampleSize[0]) : Number(sampleSize),
    scalingFactor: scaling, shiftFactor: shift, useQuantConv: bool('use_quant_conv'),
    usePostQuantConv: bool('use_post_quant_conv'), midBlockAddAttention: bool('mid_block_add_attention'),
  };
}

function checkBlockTypes(json: Record<string, unknown>, field: string, expected: string, n: number, where: string): void {
  const v = json[field];
  if (v === undefined) return;
  if (!Array.isArray(v) || v.length !== n || v.some((t) => t !== expected)) {
    throw new Error(`${where}: '${field}' must list "${expected}" once per block_out_channels entry (${n}), got ${JSON.stringify(v)}`);
  }
}

/** Reads diffusers' AutoencoderKL config.json. */
export function readVaeConfig(file: string): VaeConfig {
  return vaeConfigFromDiffusers(readJsonObject(file), file);
}

/** The architecture a diffusers-layout state dict implies (for files without a config; groups assumed 32). */
export function inferVaeConfig(sd: Map<string, Tensor>, where: string, scalingFactor = VAE_SCALING_FACTOR): VaeConfig {
  const shape = (key: string): number[] => {
    const t = sd.get(key);
    if (!t) throw new Error(`${where}: cannot infer the VAE architecture: no '${key}'`);
    return t.shape;
  };
  const blockOutChannels: number[] = [];
  while (sd.has(`encoder.down_blocks.${blockOutChannels.length}.resnets.0.conv1.weight`)) {
    blockOutChannels.push(shape(`encoder.down_blocks.${blockOutChannels.length}.resnets.0.conv1.weight`)[0]);
  }
  if (blockOutChannels.length === 0) shape('encoder.down_blocks.0.resnets.0.conv1.weight');
  let layersPerBlock = 0;
  while (sd.has(`encoder.down_blocks.0.resnets.${layersPerBlock}.conv1.weight`)) layersPerBlock++;
  return {
    inChannels: shape('encoder.conv_in.weight')[1],
    outChannels: shape('decoder.conv_out.weight')[0],
    blockOutChannels,
    layersPerBlock,
    latentChannels: shape('decoder.conv_in.weight')[1],
    normNumGroups: 32,
    sampleSize: 256,
    scalingFactor,
    shiftFactor: null,
    useQuantConv: sd.has('quant_conv.weight'),
    usePostQuantConv: sd.has('post_quant_conv.weight'),
    midBlockAddAttention: sd.has('encoder.mid_block.attentions.0.to_q.weight'),
  };
}

// ---------------------------------------------------------------------------------------------
// Key layouts
// ---------------------------------------------------------------------------------------------

export type VaeLayout = 'diffusers' | 'ldm';

const ATTENTION_TO_LDM: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };
/** diffusers before 0.15 named the attention projections like this (AttentionBlock). */
const LEGACY_ATTENTION: Record<string, string> = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' };

/**
 * A diffusers AutoencoderKL key -> its CompVis/ldm name. `levels` is the number of resolution
 * levels (ldm numbers the decoder's up blocks from the lowest resolution: up_blocks.i = up.(levels-1-i)).
 */
export function diffusersKeyToLdm(key: string, levels: number): string {
  let m = /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$/.exec(key);
  if (m) return `${m[1]}.mid.block_${Number(m[2]) + 1}.${resnetLeaf(m[3])}`;
  m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(key);
  if (m) return `${m[1]}.mid.attn_1.${ATTENTION_TO_LDM[m[2]]}.${m[3]}`;
  m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(key);
  if (m) return `encoder.down.${m[1]}.block.${m[2]}.${resnetLeaf(m[3])}`;
  m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)$/.exec(key);
  if (m) return `encoder.down.${m[1]}.downsample.${m[2]}`;
  m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(key);
  if (m) return `decoder.up.${levels - 1 - Number(m[1])}.block.${m[2]}.${resnetLeaf(m[3])}`;
  m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$/.exec(key);
  if (m) return `decoder.up.${levels - 1 - Number(m[1])}.upsample.${m[2]}`;
  m = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(key);
  if (m) return `${m[1]}.norm_out.${m[2]}`;
  return key;
}

function resnetLeaf(rest: string): string {
  return rest.replace(/^conv_shortcut\./, 'nin_shortcut.');
}

const LDM_TO_ATTENTION: Record<string, string> = Object.fromEntries(Object.entries(ATTENTION_TO_LDM).map(([d, l]) => [l, d]));

/** A CompVis/ldm AutoencoderKL key -> its diffusers name (the inverse of diffusersKeyToLdm). */
export function ldmKeyToDiffusers(key: string, levels: number): string {
  const leaf = (rest: string): string => rest.replace(/^nin_shortcut\./, 'conv_shortcut.');
  let m = /^(encoder|decoder)\.mid\.block_(\d+)\.(.+)$/.exec(key);
  if (m) return `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${leaf(m[3])}`;
  m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(key);
  if (m) return `${m[1]}.mid_block.attentions.0.${LDM_TO_ATTENTION[m[2]]}.${m[3]}`;
  m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key);
  if (m) return `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${leaf(m[3])}`;
  m = /^encoder\.down\.(\d+)\.downsample\.(.+)$/.exec(key);
  if (m) return `encoder.down_blocks.${m[1]}.downsamplers.0.${m[2]}`;
  m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(key);
  if (m) return `decoder.up_blocks.${levels - 1 - Number(m[1])}.resnets.${m[2]}.${leaf(m[3])}`;
  m = /^decoder\.up\.(\d+)\.upsample\.(.+)$/.exec(key);
  if (m) return `decoder.up_blocks.${levels - 1 - Number(m[1])}.upsamplers.0.${m[2]}`;
  m = /^(encoder|decoder)\.norm_out\.(.+)$/.exec(key);
  if (m) return `${m[1]}.conv_norm_out.${m[2]}`;
  return key;
}

/** How many resolution levels an ldm state dict has (its decoder.up.<i> / encoder.down.<i> blocks). */
export function ldmLevels(keys: Iterable<string>): number {
  let levels = 0;
  for (const k of keys) {
    const m = /^(?:decoder\.up|encoder\.down)\.(\d+)\./.exec(k);
    if (m) levels = Math.max(levels, Number(m[1]) + 1);
  }
  return levels;
}

/** ldm's attention projections are 1x1 convs; diffusers' are Linear: same numbers, [C, C, 1, 1] vs [C, C]. */
function isAttentionProjection(diffusersKey: string): boolean {
  return /\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(diffusersKey);
}

function squeezeConv1x1(t: Tensor): Tensor {
  return t.ndim === 4 && t.shape[2] === 1 && t.shape[3] === 1 ? t.reshape(t.shape[0], t.shape[1]) : t;
}

export function detectVaeLayout(keys: Iterable<string>): VaeLayout | null {
  let layout: VaeLayout | null = null;
  for (const k of keys) {
    if (/^(encoder|decoder)\.(down_blocks|up_blocks|mid_block)\./.test(k)) return 'diffusers';
    if (/^(encoder|decoder)\.(down|up|mid)\./.test(k)) layout = 'ldm';
  }
  return layout;
}

/** Renames legacy attention names (query/key/value/proj_attn) and squeezes 1x1-conv attention weights. */
function normaliseDiffusers(sd: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [key, t] of sd) {
    const m = /^(.*\.mid_block\.attentions\.\d+\.)(query|key|value|proj_attn)\.(weight|bias)$/.exec(key);
    const name = m ? `${m[1]}${LEGACY_ATTENTION[m[2]]}.${m[3]}` : key;
    out.set(name, isAttentionProjection(name) ? squeezeConv1x1(t) : t);
  }
  return out;
}

/** ldm-layout tensors renamed to diffusers' names (attention weights squeezed to [C, C]). */
export function ldmToDiffusers(sd: Map<string, Tensor>, levels = ldmLevels(sd.keys())): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [key, t] of sd) {
    const name = ldmKeyToDiffusers(key, levels);
    out.set(name, isAttentionProjection(name) ? squeezeConv1x1(t) : t);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

const FULL_SD_PREFIX = 'first_stage_model.';
/** Training-time extras of ldm autoencoder checkpoints (discriminator/LPIPS, EMA bookkeeping). */
const LDM_EXTRAS = /^(loss\.|model_ema\.)/;

export interface VaeWeights {
  /** diffusers-layout keys and shapes. */
  stateDict: Map<string, Tensor>;
  layout: VaeLayout;
  warnings: string[];
}

/**
 * A VAE state dict from any supported file, in diffusers' layout. ldm's decoder numbers its up
 * blocks from the lowest resolution: the level count comes from `config` or from the keys.
 */
export function loadVaeWeights(file: string, o: { device?: Device; config?: VaeConfig } = {}): VaeWeights {
  const { stateDict: raw, warnings } = loadCheckpoint(file, { device: o.device, skipUnknown: true });
  let sd = raw;
  const vaeKeys = [...raw.keys()].filter((k) => k.startsWith(FULL_SD_PREFIX));
  if (vaeKeys.length > 0) {
    // A full Stable Diffusion checkpoint: keep the first stage model only.
    sd = new Map();
    for (const [k, t] of raw) {
      if (k.startsWith(FULL_SD_PREFIX)) sd.set(k.slice(FULL_SD_PREFIX.length), t);
      else t.dispose();
    }
    warnings.push(`${file}: full Stable Diffusion checkpoint: using its ${vaeKeys.length} first_stage_model.* tensors, ignoring ${raw.size - vaeKeys.length} others`);
  }
  const layout = detectVaeLayout(sd.keys());
  if (layout === null) {
    for (const t of sd.values()) t.dispose();
    const some = [...raw.keys()].slice(0, 5).join(', ');
    throw new Error(`${file}: not AutoencoderKL weights (no encoder./decoder. down_blocks, up_blocks, mid_block (diffusers) ` +
      `or down, up, mid (ldm) tensors; keys start ${some})`);
  }
  if (layout === 'diffusers') return { stateDict: normaliseDiffusers(sd), layout, warnings };
  const extras = [...sd.keys()].filter((k) => LDM_EXTRAS.test(k));
  for (const k of extras) {
    sd.get(k)!.dispose();
    sd.delete(k);
  }
  if (extras.length) warnings.push(`${file}: ignoring ${extras.length} training-only tensors (${extras.slice(0, 3).join(', ')}, ...)`);
  const levels = o.config?.blockOutChannels.length ?? ldmLevels(sd.keys());
  return { stateDict: ldmToDiffusers(sd, levels), layout, warnings };
}

/** Where diffusers keeps a VAE: its weight file names, and `vae/` in a pipeline folder. */
const VAE_FILES: WeightsFileRules = {
  what: 'VAE',
  sub: 'vae',
  weightFiles: [
    'diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin',
    'diffusion_pytorch_model.fp16.safetensors', 'diffusion_pytorch_model.fp16.bin',
  ],
  describes: (file) => isVaeConfigFile(file),
};

/** A folder's weights file and config: diffusers' names first (also in a pipeline's vae/), else one lone weights file. */
export function resolveVaeFiles(dir: string): { weights: string; config: string | null } {
  return resolveWeightsFolder(dir, VAE_FILES);
}

/** Whether a config.json beside a weights file describes an AutoencoderKL (and not e.g. a DiT). */
function isVaeConfigFile(file: string): boolean {
  try {
    const json = readJsonObject(file);
    if (json._class_name !== undefined) return json._class_name === 'AutoencoderKL';
    return 'latent_channels' in json && 'block_out_channels' in json;
  } catch {
    return false;
  }
}

export interface LoadVaeOptions {
  device?: Device;
  dtype?: DType;
  /** The architecture; default: config.json beside the weights, else inferred from the weights. */
  config?: VaeConfig;
  configFile?: string;
  /** Overrides the config's scaling factor (ldm files carry none; SD 1.x/2.x use 0.18215). */
  scalingFactor?: number;
  /** Receives reader warnings (ignored keys, skipped pickle objects); default console.warn. */
  onWarning?: (message: string) => void;
}

/**
 * Builds an AutoencoderKL from a diffusers folder or any supported weights file and loads it
 * strictly: a missing, unexpected or mis-shaped tensor throws an error naming the file and keys.
 */
export function loadVae(pathOrDir: string, o: LoadVaeOptions = {}): AutoencoderKL {
  const { weights, configFile } = locateWeights(pathOrDir, VAE_FILES, { configFile: o.configFile, configGiven: !!o.config });
  let config = o.config ?? (configFile ? readVaeConfig(configFile) : undefined);
  const loaded = loadVaeWeights(weights, { config });
  for (const w of loaded.warnings) (o.onWarning ?? console.warn)(w);
  try {
    config ??= inferVaeConfig(loaded.stateDict, weights);
    if (o.scalingFactor !== undefined) config = { ...config, scalingFactor: o.scalingFactor };
    const model = new AutoencoderKL(config);
    const what = loaded.layout === 'ldm' ? `${weights} (ldm layout, renamed to diffusers' keys)` : weights;
    model.loadStateDict(loaded.stateDict, { what });
    if (o.device || o.dtype) model.to({ device: o.device, dtype: o.dtype });
    return model;
  } finally {
    for (const t of loaded.stateDict.values()) t.dispose();
  }
}
