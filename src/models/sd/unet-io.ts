// Loading and saving SD's UNet and ControlNet from the files users have: a diffusers folder
// (config.json + diffusion_pytorch_model.safetensors/.bin, also a pipeline's unet/ or controlnet/),
// a lone diffusers-layout weights file, the original ldm checkpoints (a full SD .ckpt/.safetensors
// whose UNet keys start with model.diffusion_model., or a bare UNet state dict) and ControlNet 1.0/1.1
// files (control_model.-prefixed or bare: input_hint_block, zero_convs, middle_block_out). Files
// are read by loadCheckpoint, which never executes code. The ldm names come from rules over the
// model's own keys (scripts/convert_diffusers_to_original_stable_diffusion.py's layout).
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../../torch';
import { loadCheckpoint } from '../../torch/serialization';
import type { Tensor } from '../../torch/tensor';
import { writeFileAtomic } from '../../tuning/write-atomic';
import { readJsonObject } from '../json-file';
import { ControlNetModel } from './controlnet';
import { UNet2DConditionModel } from './unet-2d-condition';
import { LoadModelOptions, locateWeights, WeightsFileRules } from './weights-files';
import {
  ControlNetConfig, controlNetConfigFromDiffusers, controlNetConfigToDiffusers, SD15_CONTROLNET_CONFIG, SD15_UNET_CONFIG,
  UNetConfig, unetConfigFromDiffusers, unetConfigToDiffusers, UNetEncoderConfig,
} from './unet-config';

// ---------------------------------------------------------------------------------------------
// diffusers <-> ldm key names
// ---------------------------------------------------------------------------------------------

const RESNET_TO_LDM: Record<string, string> = {
  norm1: 'in_layers.0', conv1: 'in_layers.2', time_emb_proj: 'emb_layers.1', norm2: 'out_layers.0', conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

function resnetToLdm(rest: string): string {
  const m = /^([a-z_0-9]+)\.(weight|bias)$/.exec(rest);
  if (!m || !(m[1] in RESNET_TO_LDM)) throw new Error(`no ldm name for resnet parameter '${rest}'`);
  return `${RESNET_TO_LDM[m[1]]}.${m[2]}`;
}

/** Names shared by the UNet and the ControlNet: conv_in, time embedding, down blocks, mid block. */
function encoderKeyToLdm(key: string, c: UNetEncoderConfig): string | null {
  const perLevel = c.layersPerBlock + 1; // resnets + the downsampler's slot
  let m = /^conv_in\.(weight|bias)$/.exec(key);
  if (m) return `input_blocks.0.0.${m[1]}`;
  m = /^time_embedding\.linear_([12])\.(weight|bias)$/.exec(key);
  if (m) return `time_embed.${m[1] === '1' ? 0 : 2}.${m[2]}`;
  m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const index = 1 + Number(m[1]) * perLevel + Number(m[3]);
    return m[2] === 'resnets' ? `input_blocks.${index}.0.${resnetToLdm(m[4])}` : `input_blocks.${index}.1.${m[4]}`;
  }
  m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)$/.exec(key);
  if (m) return `input_blocks.${(Number(m[1]) + 1) * perLevel}.0.op.${m[2]}`;
  m = /^mid_block\.resnets\.(\d+)\.(.+)$/.exec(key);
  if (m) return `middle_block.${2 * Number(m[1])}.${resnetToLdm(m[2])}`;
  m = /^mid_block\.attentions\.(\d+)\.(.+)$/.exec(key);
  if (m) return `middle_block.${2 * Number(m[1]) + 1}.${m[2]}`;
  return null;
}

/** A diffusers UNet2DConditionModel key -> its name in the original ldm checkpoints (without model.diffusion_model.). */
export function unetKeyToLdm(key: string, c: UNetConfig): string {
  const shared = encoderKeyToLdm(key, c);
  if (shared) return shared;
  const perLevel = c.layersPerBlock + 1; // up blocks have one resnet more than down blocks
  let m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const index = Number(m[1]) * perLevel + Number(m[3]);
    return m[2] === 'resnets' ? `output_blocks.${index}.0.${resnetToLdm(m[4])}` : `output_blocks.${index}.1.${m[4]}`;
  }
  m = /^up_blocks\.(\d+)\.upsamplers\.0\.(.+)$/.exec(key);
  if (m) {
    const i = Number(m[1]);
    // The upsampler follows the last resnet, and its attention when the block has one.
    const slot = c.upBlockTypes[i] === 'CrossAttnUpBlock2D' ? 2 : 1;
    return `output_blocks.${i * perLevel + perLevel - 1}.${slot}.${m[2]}`;
  }
  m = /^conv_norm_out\.(weight|bias)$/.exec(key);
  if (m) return `out.0.${m[1]}`;
  m = /^conv_out\.(weight|bias)$/.exec(key);
  if (m) return `out.2.${m[1]}`;
  throw new Error(`no ldm name for UNet2DConditionModel key '${key}'`);
}

/** A diffusers ControlNetModel key -> its name in ControlNet 1.0/1.1 checkpoints (without control_model.). */
export function controlNetKeyToLdm(key: string, c: ControlNetConfig): string {
  const shared = encoderKeyToLdm(key, c);
  if (shared) return shared;
  let m = /^controlnet_cond_embedding\.conv_in\.(weight|bias)$/.exec(key);
  if (m) return `input_hint_block.0.${m[1]}`;
  m = /^controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)$/.exec(key);
  if (m) return `input_hint_block.${2 * Number(m[1]) + 2}.${m[2]}`;
  m = /^controlnet_cond_embedding\.conv_out\.(weight|bias)$/.exec(key);
  // Each conv of the hint block is followed by a SiLU: conv_in, 2 convs per step, conv_out.
  if (m) return `input_hint_block.${4 * (c.conditioningEmbeddingOutChannels.length - 1) + 2}.${m[1]}`;
  m = /^controlnet_down_blocks\.(\d+)\.(weight|bias)$/.exec(key);
  if (m) return `zero_convs.${m[1]}.0.${m[2]}`;
  m = /^controlnet_mid_block\.(weight|bias)$/.exec(key);
  if (m) return `middle_block_out.0.${m[1]}`;
  throw new Error(`no ldm name for ControlNetModel key '${key}'`);
}

/** Every key of the model -> its ldm name. */
export function ldmKeyMap(model: UNet2DConditionModel | ControlNetModel): Map<string, string> {
  const out = new Map<string, string>();
  for (const key of model.stateDict().keys()) {
    out.set(key, model instanceof UNet2DConditionModel
      ? unetKeyToLdm(key, model.config) : controlNetKeyToLdm(key, model.config as ControlNetConfig));
  }
  return out;
}

/** An ldm-layout state dict renamed to the model's diffusers keys; keys the model does not have keep their names (strict loading then names them). */
export function ldmToDiffusers(sd: Map<string, Tensor>, model: UNet2DConditionModel | ControlNetModel): Map<string, Tensor> {
  const inverse = new Map([...ldmKeyMap(model)].map(([d, l]) => [l, d]));
  const out = new Map<string, Tensor>();
  for (const [k, t] of sd) out.set(inverse.get(k) ?? k, t);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

export type SdWeightsLayout = 'diffusers' | 'ldm';

/** Prefixes of the UNet / ControlNet in full ldm checkpoints (ControlNet 1.0 files hold the whole cldm model). */
const FULL_PREFIX = { unet: 'model.diffusion_model.', controlnet: 'control_model.' } as const;

function detectLayout(keys: string[]): SdWeightsLayout | null {
  if (keys.some((k) => /^(down_blocks|mid_block|up_blocks)\./.test(k))) return 'diffusers';
  if (keys.some((k) => /^(input_blocks|middle_block|output_blocks)\./.test(k))) return 'ldm';
  return null;
}

/** The part of a checkpoint that belongs to `which`, in its own layout, with the file's extras dropped. */
function selectWeights(raw: Map<string, Tensor>, which: 'unet' | 'controlnet', file: string, warn: (m: string) => void): { sd: Map<string, Tensor>; layout: SdWeightsLayout } {
  const prefix = FULL_PREFIX[which];
  let sd = raw;
  if ([...raw.keys()].some((k) => k.startsWith(prefix))) {
    sd = new Map();
    for (const [k, t] of raw) {
      if (k.startsWith(prefix)) sd.set(k.slice(prefix.length), t);
      else t.dispose();
    }
    if (sd.size !== raw.size) warn(`${file}: using its ${sd.size} ${prefix}* tensors, ignoring ${raw.size - sd.size} others`);
  }
  const keys = [...sd.keys()];
  const layout = detectLayout(keys);
  if (layout === null) {
    for (const t of sd.values()) t.dispose();
    throw new Error(`${file}: not ${which === 'unet' ? 'UNet2DConditionModel' : 'ControlNetModel'} weights (no down_blocks/mid_block (diffusers) ` +
      `or input_blocks/middle_block (ldm) tensors; keys start ${[...raw.keys()].slice(0, 5).join(', ')})`);
  }
  return { sd, layout };
}

/** diffusers' weight files of a UNet / ControlNet folder, and how their config.json says which model it is. */
function fileRules(which: 'unet' | 'controlnet'): WeightsFileRules {
  const className = which === 'unet' ? 'UNet2DConditionModel' : 'ControlNetModel';
  return {
    what: which, sub: which,
    weightFiles: ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin', 'diffusion_pytorch_model.fp16.safetensors',
      'diffusion_pytorch_model.fp16.bin'],
    describes: (file) => {
      try {
        return readJsonObject(file)._class_name === className;
      } catch {
        return false;
      }
    },
  };
}

function loadSdModel<M extends UNet2DConditionModel | ControlNetModel, C>(pathOrDir: string, which: 'unet' | 'controlnet',
  o: LoadModelOptions<C>, readConfig: (file: string) => C, build: (c: C | undefined) => M): M {
  const { weights, configFile } = locateWeights(pathOrDir, fileRules(which), { configFile: o.configFile, configGiven: !!o.config });
  const config = o.config ?? (configFile ? readConfig(configFile) : undefined);
  const warn = o.onWarning ?? console.warn;
  const { stateDict: raw, warnings } = loadCheckpoint(weights, { skipUnknown: true });
  for (const w of warnings) warn(w);
  const { sd, layout } = selectWeights(raw, which, weights, warn);
  try {
    // The model is built without drawing random weights: every tensor is loaded next (strictly).
    const model = torch.nn.init.skipInit(() => build(config));
    const named = layout === 'ldm' ? ldmToDiffusers(sd, model) : sd;
    model.loadStateDict(named, { what: layout === 'ldm' ? `${weights} (ldm layout, renamed to diffusers' keys)` : weights });
    if (o.device || o.dtype) model.to({ device: o.device, dtype: o.dtype });
    return model;
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}

/** A UNet2DConditionModel from a diffusers folder / file or an ldm checkpoint, loaded strictly (errors name the file and keys). */
export function loadUNet(pathOrDir: string, o: LoadModelOptions<UNetConfig> = {}): UNet2DConditionModel {
  return loadSdModel(pathOrDir, 'unet', o, (f) => unetConfigFromDiffusers(readJsonObject(f), f),
    (c) => new UNet2DConditionModel(c ?? SD15_UNET_CONFIG));
}

/** A ControlNetModel from a diffusers folder / file or a ControlNet 1.0/1.1 checkpoint, loaded strictly. */
export function loadControlNet(pathOrDir: string, o: LoadModelOptions<ControlNetConfig> = {}): ControlNetModel {
  return loadSdModel(pathOrDir, 'controlnet', o, (f) => controlNetConfigFromDiffusers(readJsonObject(f), f),
    (c) => new ControlNetModel(c ?? SD15_CONTROLNET_CONFIG));
}

/** Writes a diffusers folder (config.json + diffusion_pytorch_model.safetensors) that from_pretrained reads; each file atomically. */
export function saveDiffusersModel(model: UNet2DConditionModel | ControlNetModel, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  torch.saveSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), model.stateDict(), { format: 'pt' });
  const config = model instanceof UNet2DConditionModel
    ? unetConfigToDiffusers(model.config) : controlNetConfigToDiffusers(model.config as ControlNetConfig);
  writeFileAtomic(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}
