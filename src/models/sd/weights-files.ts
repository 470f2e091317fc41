// Finding a model's weights file and config.json from what a user points at: a model folder, a
// pipeline folder holding it in a subfolder (unet/, text_encoder/, ...), or one weights file with
// (perhaps) its config.json beside it.
import * as fs from 'fs';
import * as path from 'path';
import type { DType } from '../../torch/dtype';
import type { Device } from '../../torch/tensor';

/** What a loader of one model takes besides the path. */
export interface LoadModelOptions<C> {
  device?: Device;
  dtype?: DType;
  /** The architecture; default: the config.json found with the weights. */
  config?: C;
  configFile?: string;
  /** Receives reader warnings (ignored keys, skipped pickle objects); default console.warn. */
  onWarning?: (message: string) => void;
}

export interface WeightsFileRules {
  /** What the model is called in errors ("CLIP text encoder"). */
  what: string;
  /** The model's subfolder in a pipeline folder. */
  sub: string;
  /** The weight file names its library writes, in order of preference. */
  weightFiles: readonly string[];
  /** Whether a config.json beside a lone weights file is this model's (not another model's). */
  describes: (configFile: string) => boolean;
}

/** A folder's weights file and config.json: the library's names first (also in a pipeline's subfolder), else one lone weights file. */
export function resolveWeightsFolder(dir: string, r: WeightsFileRules): { weights: string; config: string | null } {
  const inner = path.join(dir, r.sub);
  if (!fs.existsSync(path.join(dir, 'config.json')) && fs.existsSync(path.join(inner, 'config.json'))) return resolveWeightsFolder(inner, r);
  const config = fs.existsSync(path.join(dir, 'config.json')) ? path.join(dir, 'config.json') : null;
  for (const name of r.weightFiles) if (fs.existsSync(path.join(dir, name))) return { weights: path.join(dir, name), config };
  const candidates = fs.readdirSync(dir).filter((f) => /\.(safetensors|ckpt|pt|pth|bin)$/.test(f));
  if (candidates.length === 1) return { weights: path.join(dir, candidates[0]), config };
  throw new Error(`${dir}: no ${r.what} weights found (expected ${r.weightFiles.slice(0, 2).join(' or ')}, or exactly one ` +
    `.safetensors/.ckpt/.pt/.pth/.bin file; found ${candidates.length ? candidates.join(', ') : 'none'})`);
}

/**
 * The weights file and config file for a file-or-folder argument. An explicit configFile wins;
 * with `configGiven` (the caller has the config object) nothing is looked up beside a file.
 */
export function locateWeights(pathOrDir: string, r: WeightsFileRules, o: { configFile?: string; configGiven?: boolean } = {}): { weights: string; configFile: string | null } {
  if (!fs.existsSync(pathOrDir)) throw new Error(`${pathOrDir}: no such ${r.what} file or folder`);
  if (fs.statSync(pathOrDir).isDirectory()) {
    const found = resolveWeightsFolder(pathOrDir, r);
    return { weights: found.weights, configFile: o.configFile ?? found.config };
  }
  let configFile = o.configFile ?? null;
  if (!configFile && !o.configGiven) {
    const beside = path.join(path.dirname(pathOrDir), 'config.json');
    if (fs.existsSync(beside) && r.describes(beside)) configFile = beside;
  }
  return { weights: pathOrDir, configFile };
}
