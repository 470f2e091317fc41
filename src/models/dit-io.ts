// Loading and saving DiT: official .pt checkpoints (plain state_dict or training checkpoints with
// model/ema), diffusers-layout safetensors, and our own safetensors + JSON config.
import * as fs from 'fs';
import * as path from 'path';
import { LoadReport } from '../torch/nn/module';
import { CheckpointError, loadCheckpoint, safetensorsMetadata, saveSafetensors } from '../torch/serialization';
import { Device, Tensor } from '../torch/tensor';
import { configFromModelArgs, DiT, DiTConfig, DIT_DEFAULTS, modelArgs } from './dit';
import { detectLayout, diffusersToOfficial, stripModulePrefix } from './dit-keys';
import { applyPeft, PeftOptions } from './peft';
import { readJsonObject } from './json-file';

/** diffusers' Transformer2DModel config.json for a DiT -> DiTConfig. */
function fromDiffusersConfig(c: Record<string, unknown>, file: string): DiTConfig {
  const num = (k: string): number => {
    const v = c[k];
    if (typeof v !== 'number') throw new Error(`${file}: field '${k}' must be a number (diffusers DiT config)`);
    return v;
  };
  const inChannels = num('in_channels');
  const outChannels = typeof c.out_channels === 'number' ? c.out_channels : inChannels;
  return {
    ...DIT_DEFAULTS,
    inputSize: num('sample_size'), patchSize: num('patch_size'), inChannels, depth: num('num_layers'),
    numHeads: num('num_attention_heads'), hiddenSize: num('num_attention_heads') * num('attention_head_dim'),
    numClasses: num('num_embeds_ada_norm'), learnSigma: outChannels === 2 * inChannels,
  };
}

/**
 * Reads a DiT config: our own `{model_args: {...}}` files, a flat object of the official
 * constructor arguments, or a diffusers transformer config.json.
 */
export function readDiTConfig(file: string): DiTConfig {
  const json = readJsonObject(file);
  if (json.model_args !== undefined) {
    if (typeof json.model_args !== 'object' || json.model_args === null) throw new Error(`${file}: 'model_args' must be an object`);
    return withFile(file, () => configFromModelArgs(json.model_args as Record<string, unknown>));
  }
  if ('num_layers' in json && 'sample_size' in json) return fromDiffusersConfig(json, file);
  const args = Object.fromEntries(Object.entries(json).filter(([k]) => !k.startsWith('_')));
  return withFile(file, () => configFromModelArgs(args));
}

function withFile<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/** The config file that belongs to a weights file: X.json beside X.safetensors, or diffusers' config.json. */
export function siblingConfig(weights: string): string | null {
  const candidates = [weights.replace(/\.(safetensors|pt|pth|bin)$/, '.json'), path.join(path.dirname(weights), 'config.json')];
  return candidates.find((c) => c !== weights && fs.existsSync(c)) ?? null;
}

export interface LoadDiTWeightsOptions {
  device?: Device;
  /** Which state dict of a training checkpoint: 'ema' (default when present) or 'model'. */
  key?: string;
  /** Load objects the checkpoint reader cannot build (e.g. argparse args) as placeholders, with warnings. Default false: refused. */
  skipUnknown?: boolean;
}

/** DiT weights from any supported file, as official state_dict keys. */
export function loadDiTWeights(file: string, o: LoadDiTWeightsOptions = {}): { stateDict: Map<string, Tensor>; warnings: string[] } {
  const { stateDict, warnings } = loadCheckpoint(file, { device: o.device, key: o.key, skipUnknown: o.skipUnknown ?? false });
  const sd = stripModulePrefix(stateDict);
  const layout = detectLayout(sd.keys());
  if (layout === null) {
    const some = [...sd.keys()].slice(0, 5).join(', ');
    throw new Error(`${file}: not DiT weights (no x_embedder.proj.weight or diffusers pos_embed.proj.weight; keys start ${some})`);
  }
  return { stateDict: layout === 'official' ? sd : diffusersToOfficial(sd), warnings };
}

export interface LoadDiTOptions extends LoadDiTWeightsOptions {
  /** The architecture; default: read from the config file beside the weights. */
  config?: DiTConfig;
  configFile?: string;
  /** Load what matches and report the rest (e.g. a checkpoint with another label table). Default false. */
  partial?: boolean;
}

/** The constructor arguments saveDiT also writes into a safetensors file's metadata ('config'), or null. */
function embeddedConfig(file: string): DiTConfig | null {
  if (!file.endsWith('.safetensors')) return null;
  const text = safetensorsMetadata(file).config;
  if (text === undefined) return null;
  let args: unknown;
  try {
    args = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: metadata 'config' is not valid JSON (${(e as Error).message})`);
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new Error(`${file}: metadata 'config' must be a JSON object`);
  return withFile(`${file} (metadata 'config')`, () => configFromModelArgs(args as Record<string, unknown>));
}

/** Builds a DiT from a weights file and its config, loading strictly unless partial is asked for. */
export function loadDiT(file: string, o: LoadDiTOptions = {}): { model: DiT; report: LoadReport; warnings: string[] } {
  // Checked first: a mistyped path is not a missing config.
  if (!fs.existsSync(file)) throw new CheckpointError(file, 'file does not exist');
  const configFile = o.configFile ?? (o.config ? null : siblingConfig(file));
  // An exported model file carries its config in its metadata: it loads without the .json beside it.
  const config0 = o.config ?? (configFile ? readDiTConfig(configFile) : embeddedConfig(file));
  if (!config0) {
    throw new Error(`${file}: no model config given and no ${path.basename(file).replace(/\.[^.]+$/, '.json')} or config.json beside it ` +
      '(pass --config with the official constructor arguments, e.g. {"input_size": 32, "depth": 28, ...})');
  }
  const { stateDict, warnings } = loadDiTWeights(file, o);
  const config = withGammasOf(stateDict, config0);
  const model = new DiT(config, { initialize: false });
  // Unmergeable adapters (AdaptFormer) are part of the saved model: rebuild them before loading.
  const adapters = configFile ? readAdapters(configFile) : null;
  if (adapters) applyPeft(model, adapters);
  if (o.device) model.to(o.device);
  // pos_embed is a fixed function of the config: files that omit it keep the computed table.
  if (!stateDict.has('pos_embed')) stateDict.set('pos_embed', model.pos_embed);
  const report = model.loadStateDict(stateDict, { strict: !o.partial, what: file });
  return { model, report, warnings };
}

/** Turns DiffFit gammas on when the weights carry them (checkpoints of the Diff-Tuning fork). */
function withGammasOf(sd: Map<string, Tensor>, config: DiTConfig): DiTConfig {
  let depth = 0;
  while (sd.has(`blocks.${depth}.gamma1`)) depth++;
  if (depth === 0 || config.useGamma) return config;
  return { ...config, useGamma: true, gammaDepth: depth };
}

/** The adapters a saved model carries (the `adapters` entry of our X.json), or null. */
function readAdapters(configFile: string): PeftOptions | null {
  const a = readJsonObject(configFile).adapters as PeftOptions | undefined;
  if (a === undefined) return null;
  if (typeof a !== 'object' || a === null || a.method !== 'adaptformer') {
    throw new Error(`${configFile}: 'adapters' must be {"method": "adaptformer", "adapterDim": n, "adapterScale": s}`);
  }
  return a;
}

/**
 * Saves weights as safetensors and the official constructor arguments as X.json beside them;
 * `adapters` records unmergeable adapters the weights include, so loadDiT rebuilds them; `omit` leaves out
 * tensors loadDiT can recompute (pos_embed).
 */
export function saveDiT(file: string, model: DiT, metadata: Record<string, string> = {}, adapters?: PeftOptions, omit: string[] = []): void {
  if (!file.endsWith('.safetensors')) throw new Error(`saveDiT: '${file}' should end in .safetensors`);
  const config = { model: 'DiT', model_args: modelArgs(model.config), ...(adapters ? { adapters } : {}) };
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const sd = model.stateDict();
  for (const k of omit) sd.delete(k);
  saveSafetensors(file, sd, { ...metadata, config: JSON.stringify(config.model_args) });
  const json = file.replace(/\.safetensors$/, '.json');
  const tmp = `${json}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(config, null, 2) + '\n');
  fs.renameSync(tmp, json);
}
