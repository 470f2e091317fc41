// Configurations of diffusers' UNet2DConditionModel and ControlNetModel (the SD 1.x/2.x family),
// read from and written as diffusers' config.json. Every field diffusers knows either maps to a
// field here or must hold the value that means "not used" (class embeddings, SDXL's added
// conditions, ...): anything else is an error naming the field, never silently ignored.
import { readJsonObject } from '../json-file';

export type DownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

/** The fields the UNet and the ControlNet share: input, time embedding, down path and mid block. */
export interface UNetEncoderConfig {
  inChannels: number;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: DownBlockType[];
  midBlockType: 'UNetMidBlock2DCrossAttn';
  blockOutChannels: number[];
  layersPerBlock: number;
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  crossAttentionDim: number;
  transformerLayersPerBlock: number | number[];
  /** SD1.5's (mis)named argument: without numAttentionHeads it is the number of heads per block. */
  attentionHeadDim: number | number[];
  numAttentionHeads: number | number[] | null;
  useLinearProjection: boolean;
  upcastAttention: boolean;
}

export interface UNetConfig extends UNetEncoderConfig {
  sampleSize: number | null;
  outChannels: number;
  centerInputSample: boolean;
  upBlockTypes: UpBlockType[];
}

export interface ControlNetConfig extends UNetEncoderConfig {
  conditioningChannels: number;
  controlnetConditioningChannelOrder: 'rgb' | 'bgr';
  /** Channels of the condition image's conv encoder; each step after the first halves the resolution. */
  conditioningEmbeddingOutChannels: number[];
  globalPoolConditions: boolean;
}

/** stable-diffusion-v1-5 unet/config.json. */
export const SD15_UNET_CONFIG: Readonly<UNetConfig> = Object.freeze({
  sampleSize: 64, inChannels: 4, outChannels: 4, centerInputSample: false, flipSinToCos: true, freqShift: 0,
  downBlockTypes: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  midBlockType: 'UNetMidBlock2DCrossAttn',
  upBlockTypes: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: 2, downsamplePadding: 1, midBlockScaleFactor: 1,
  normNumGroups: 32, normEps: 1e-5, crossAttentionDim: 768, transformerLayersPerBlock: 1, attentionHeadDim: 8,
  numAttentionHeads: null, useLinearProjection: false, upcastAttention: false,
} as UNetConfig);

/** ControlNetModel.from_unet's own arguments (diffusers' defaults, also lllyasviel's control_v11p_sd15_*). */
export const CONTROLNET_DEFAULTS = Object.freeze({
  conditioningChannels: 3,
  controlnetConditioningChannelOrder: 'rgb' as const,
  conditioningEmbeddingOutChannels: [16, 32, 96, 256],
  globalPoolConditions: false,
});

/** lllyasviel control_v11p_sd15_* config.json. */
export const SD15_CONTROLNET_CONFIG: Readonly<ControlNetConfig> = Object.freeze(controlNetConfigFromUNet(SD15_UNET_CONFIG));

/** The ControlNet a UNet implies (the config half of diffusers' ControlNetModel.from_unet). */
export function controlNetConfigFromUNet(u: UNetEncoderConfig, o: Partial<typeof CONTROLNET_DEFAULTS> = {}): ControlNetConfig {
  return {
    inChannels: u.inChannels, flipSinToCos: u.flipSinToCos, freqShift: u.freqShift, downBlockTypes: [...u.downBlockTypes],
    midBlockType: u.midBlockType, blockOutChannels: [...u.blockOutChannels], layersPerBlock: u.layersPerBlock,
    downsamplePadding: u.downsamplePadding, midBlockScaleFactor: u.midBlockScaleFactor, normNumGroups: u.normNumGroups,
    normEps: u.normEps, crossAttentionDim: u.crossAttentionDim, transformerLayersPerBlock: copy(u.transformerLayersPerBlock),
    attentionHeadDim: copy(u.attentionHeadDim), numAttentionHeads: copy(u.numAttentionHeads),
    useLinearProjection: u.useLinearProjection, upcastAttention: u.upcastAttention,
    ...CONTROLNET_DEFAULTS, conditioningEmbeddingOutChannels: [...CONTROLNET_DEFAULTS.conditioningEmbeddingOutChannels], ...o,
  };
}

function copy<T>(v: T): T {
  return Array.isArray(v) ? ([...v] as T) : v;
}

/** Per-block values of a field that is one number for all blocks or one per block. */
export function perBlock(v: number | number[], blocks: number, field: string): number[] {
  const out = typeof v === 'number' ? Array<number>(blocks).fill(v) : v;
  if (out.length !== blocks) throw new Error(`${field}: expected one value per block (${blocks}), got ${out.length}`);
  return out;
}

/** Heads per down block (the mid block uses the last): num_attention_heads, else attention_head_dim (as diffusers). */
export function headsPerBlock(c: UNetEncoderConfig): number[] {
  return perBlock(c.numAttentionHeads ?? c.attentionHeadDim, c.blockOutChannels.length, 'attentionHeadDim');
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

function positiveInt(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

export function validateEncoderConfig(c: UNetEncoderConfig, what: string): void {
  const n = c.blockOutChannels.length;
  const fail = (msg: string): never => {
    throw new Error(`${what}: ${msg}`);
  };
  if (!Array.isArray(c.blockOutChannels) || n === 0 || !c.blockOutChannels.every(positiveInt)) {
    fail(`blockOutChannels must be a non-empty list of positive integers, got ${JSON.stringify(c.blockOutChannels)}`);
  }
  for (const k of ['inChannels', 'layersPerBlock', 'normNumGroups', 'crossAttentionDim'] as const) {
    if (!positiveInt(c[k])) fail(`${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  for (const ch of c.blockOutChannels) if (ch % c.normNumGroups) fail(`blockOutChannels entry ${ch} is not a multiple of normNumGroups ${c.normNumGroups}`);
  if (!Array.isArray(c.downBlockTypes) || c.downBlockTypes.length !== n) {
    fail(`downBlockTypes must list one block type per blockOutChannels entry (${n}), got ${JSON.stringify(c.downBlockTypes)}`);
  }
  for (const t of c.downBlockTypes) if (t !== 'CrossAttnDownBlock2D' && t !== 'DownBlock2D') fail(`down block type ${JSON.stringify(t)} is not supported (CrossAttnDownBlock2D, DownBlock2D)`);
  if (c.midBlockType !== 'UNetMidBlock2DCrossAttn') fail(`midBlockType ${JSON.stringify(c.midBlockType)} is not supported (UNetMidBlock2DCrossAttn)`);
  let heads: number[] = [];
  let layers: number[] = [];
  try {
    heads = headsPerBlock(c);
    layers = perBlock(c.transformerLayersPerBlock, n, 'transformerLayersPerBlock');
  } catch (e) {
    fail((e as Error).message);
  }
  heads.forEach((h, i) => {
    if (!positiveInt(h) || c.blockOutChannels[i] % h) fail(`block ${i}: ${c.blockOutChannels[i]} channels do not split into ${JSON.stringify(h)} attention heads`);
    if (!positiveInt(layers[i])) fail(`transformerLayersPerBlock entry ${i} must be a positive integer, got ${JSON.stringify(layers[i])}`);
  });
  if (!(c.normEps > 0)) fail(`normEps must be positive, got ${c.normEps}`);
  if (!Number.isInteger(c.downsamplePadding) || c.downsamplePadding < 0) fail(`downsamplePadding must be a non-negative integer, got ${c.downsamplePadding}`);
  if (!(c.midBlockScaleFactor > 0)) fail(`midBlockScaleFactor must be positive, got ${c.midBlockScaleFactor}`);
}

export function validateUNetConfig(c: UNetConfig, what = 'UNet2DConditionModel'): void {
  validateEncoderConfig(c, what);
  if (!positiveInt(c.outChannels)) throw new Error(`${what}: outChannels must be a positive integer, got ${JSON.stringify(c.outChannels)}`);
  if (!Array.isArray(c.upBlockTypes) || c.upBlockTypes.length !== c.blockOutChannels.length ||
    c.upBlockTypes.some((t) => t !== 'CrossAttnUpBlock2D' && t !== 'UpBlock2D')) {
    throw new Error(`${what}: upBlockTypes must list CrossAttnUpBlock2D or UpBlock2D once per block (${c.blockOutChannels.length}), got ${JSON.stringify(c.upBlockTypes)}`);
  }
}

export function validateControlNetConfig(c: ControlNetConfig, what = 'ControlNetModel'): void {
  validateEncoderConfig(c, what);
  if (!positiveInt(c.conditioningChannels)) throw new Error(`${what}: conditioningChannels must be a positive integer, got ${JSON.stringify(c.conditioningChannels)}`);
  if (c.controlnetConditioningChannelOrder !== 'rgb' && c.controlnetConditioningChannelOrder !== 'bgr') {
    throw new Error(`${what}: controlnetConditioningChannelOrder must be "rgb" or "bgr", got ${JSON.stringify(c.controlnetConditioningChannelOrder)}`);
  }
  const e = c.conditioningEmbeddingOutChannels;
  if (!Array.isArray(e) || e.length === 0 || !e.every(positiveInt)) {
    throw new Error(`${what}: conditioningEmbeddingOutChannels must be a non-empty list of positive integers, got ${JSON.stringify(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// diffusers config.json
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

/** camelCase field <-> diffusers' snake_case name, with diffusers' constructor default. */
const ENCODER_FIELDS: [keyof UNetEncoderConfig, string, unknown][] = [
  ['inChannels', 'in_channels', 4], ['flipSinToCos', 'flip_sin_to_cos', true], ['freqShift', 'freq_shift', 0],
  ['downBlockTypes', 'down_block_types', SD15_UNET_CONFIG.downBlockTypes],
  ['midBlockType', 'mid_block_type', 'UNetMidBlock2DCrossAttn'],
  ['blockOutChannels', 'block_out_channels', [320, 640, 1280, 1280]], ['layersPerBlock', 'layers_per_block', 2],
  ['downsamplePadding', 'downsample_padding', 1], ['midBlockScaleFactor', 'mid_block_scale_factor', 1],
  ['normNumGroups', 'norm_num_groups', 32], ['normEps', 'norm_eps', 1e-5], ['crossAttentionDim', 'cross_attention_dim', 1280],
  ['transformerLayersPerBlock', 'transformer_layers_per_block', 1], ['attentionHeadDim', 'attention_head_dim', 8],
  ['numAttentionHeads', 'num_attention_heads', null], ['useLinearProjection', 'use_linear_projection', false],
  ['upcastAttention', 'upcast_attention', false],
];
const UNET_FIELDS: [keyof UNetConfig, string, unknown][] = [
  ...ENCODER_FIELDS, ['sampleSize', 'sample_size', null], ['outChannels', 'out_channels', 4],
  ['centerInputSample', 'center_input_sample', false], ['upBlockTypes', 'up_block_types', SD15_UNET_CONFIG.upBlockTypes],
];
const CONTROLNET_FIELDS: [keyof ControlNetConfig, string, unknown][] = [
  ...ENCODER_FIELDS, ['conditioningChannels', 'conditioning_channels', 3],
  ['controlnetConditioningChannelOrder', 'controlnet_conditioning_channel_order', 'rgb'],
  ['conditioningEmbeddingOutChannels', 'conditioning_embedding_out_channels', [16, 32, 96, 256]],
  ['globalPoolConditions', 'global_pool_conditions', false],
];

/** diffusers fields for features this implementation does not have, with the value that means "off". */
const OFF_FIELDS: Record<string, unknown> = {
  only_cross_attention: false, dual_cross_attention: false, act_fn: 'silu', dropout: 0, class_embed_type: null,
  addition_embed_type: null, addition_time_embed_dim: null, num_class_embeds: null, encoder_hid_dim: null,
  encoder_hid_dim_type: null, resnet_time_scale_shift: 'default', resnet_skip_time_act: false, resnet_out_scale_factor: 1,
  time_embedding_type: 'positional', time_embedding_dim: null, time_embedding_act_fn: null, timestep_post_act: null,
  time_cond_proj_dim: null, conv_in_kernel: 3, conv_out_kernel: 3, projection_class_embeddings_input_dim: null,
  attention_type: 'default', class_embeddings_concat: false, mid_block_only_cross_attention: null, cross_attention_norm: null,
  reverse_transformer_layers_per_block: null,
};
/** Fields that change nothing here (SDXL's added-embedding heads, only read when addition_embed_type is set). */
const IGNORED_FIELDS = new Set(['addition_embed_type_num_heads']);

function sameJson(a: unknown, b: unknown): boolean {
  if (a === 'swish' && b === 'silu') return true; // diffusers' alias
  if (Array.isArray(a) && a.every((x) => x === a[0]) && !Array.isArray(b)) return a.length > 0 && a[0] === b;
  return JSON.stringify(a) === JSON.stringify(b);
}

function fromDiffusers<C>(json: Json, fields: [keyof C, string, unknown][], className: string, where: string): C {
  if (json._class_name !== undefined && json._class_name !== className) {
    throw new Error(`${where}: _class_name is ${JSON.stringify(json._class_name)}, expected "${className}"`);
  }
  const known = new Set(fields.map(([, s]) => s));
  const out: Record<string, unknown> = {};
  for (const [camel, snake, dflt] of fields) {
    const v = json[snake] === undefined ? dflt : json[snake];
    out[camel as string] = Array.isArray(v) ? [...v] : v;
  }
  for (const [key, value] of Object.entries(json)) {
    if (key.startsWith('_') || known.has(key) || IGNORED_FIELDS.has(key)) continue;
    if (key in OFF_FIELDS) {
      if (value !== null && value !== undefined && !sameJson(value, OFF_FIELDS[key])) {
        throw new Error(`${where}: '${key}' = ${JSON.stringify(value)} is not supported (only ${JSON.stringify(OFF_FIELDS[key])})`);
      }
      continue;
    }
    throw new Error(`${where}: unknown ${className} field '${key}'`);
  }
  return out as C;
}

function toDiffusers<C>(c: C, fields: [keyof C, string, unknown][], className: string): Json {
  const out: Json = { _class_name: className };
  for (const [camel, snake] of fields) out[snake] = c[camel];
  out.act_fn = 'silu';
  out.only_cross_attention = false;
  out.resnet_time_scale_shift = 'default';
  return out;
}

export function unetConfigFromDiffusers(json: Json, where = 'UNet2DConditionModel config'): UNetConfig {
  const c = fromDiffusers<UNetConfig>(json, UNET_FIELDS, 'UNet2DConditionModel', where);
  validateUNetConfig(c, where);
  return c;
}

export function controlNetConfigFromDiffusers(json: Json, where = 'ControlNetModel config'): ControlNetConfig {
  const c = fromDiffusers<ControlNetConfig>(json, CONTROLNET_FIELDS, 'ControlNetModel', where);
  validateControlNetConfig(c, where);
  return c;
}

/** The config.json diffusers writes for this UNet (from_pretrained reads it back). */
export function unetConfigToDiffusers(c: UNetConfig): Json {
  return toDiffusers(c, UNET_FIELDS, 'UNet2DConditionModel');
}

export function controlNetConfigToDiffusers(c: ControlNetConfig): Json {
  return toDiffusers(c, CONTROLNET_FIELDS, 'ControlNetModel');
}

export function readUNetConfig(file: string): UNetConfig {
  return unetConfigFromDiffusers(readJsonObject(file), file);
}

export function readControlNetConfig(file: string): ControlNetConfig {
  return controlNetConfigFromDiffusers(readJsonObject(file), file);
}
