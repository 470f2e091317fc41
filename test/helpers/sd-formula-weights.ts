// The sd-controlnet-ref fixture ships no weights: every tensor of its tiny CLIP / UNet / ControlNet
// is regenerated here from the hash formula of its weights-manifest.json (README "Weights") and
// checked against the manifest's sha256, so a wrong formula or key order fails loudly.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';

export const SD_FIXTURES = path.join(__dirname, '..', '..', '..', '..', 'shared', 'fixtures', 'sd-controlnet-ref');

/** false when every named fixture file exists, else the reason to skip (and a note in the log). */
export function skipUnlessSdFixtures(files: string[], what: string): false | string {
  const present = files.every((f) => fs.existsSync(path.join(SD_FIXTURES, f)));
  if (!present) console.log(`# skipping ${what}: fixtures in ${SD_FIXTURES} not found`);
  return present ? false : `fixtures in ${SD_FIXTURES} are absent`;
}

/** A JSON file of the fixture folder. */
export function readSdJson<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(SD_FIXTURES, name), 'utf8')) as T;
}

export type SdManifestSection = 'clip_text' | 'unet' | 'controlnet' | 'controlnet_from_unet';
export type WeightRule = 'fan_in' | 'embedding' | 'small' | 'norm_weight';

/** One tensor of a formula section (clip_text, unet, controlnet). */
export interface FormulaEntry {
  k: number;
  key: string;
  shape: number[];
  numel: number;
  rule: WeightRule;
  fan_in?: number;
  sha256: string;
}

/** One tensor of controlnet_from_unet: copied from the UNet, zero-initialised, or from the formula. */
interface FromUnetEntry {
  key: string;
  shape: number[];
  source: 'unet' | 'zero' | 'formula';
  unet_key?: string;
  k?: number;
  rule?: WeightRule;
  numel?: number;
  fan_in?: number;
  sha256?: string;
}

interface Manifest {
  clip_text: { config: Record<string, unknown>; tensors: FormulaEntry[] };
  unet: { config: Record<string, unknown>; tensors: FormulaEntry[] };
  controlnet: { config: Record<string, unknown>; tensors: FormulaEntry[] };
  controlnet_from_unet: { tensors: FromUnetEntry[] };
}

let manifest: Manifest | undefined;
export function sdManifest(): Manifest {
  return (manifest ??= readSdJson<Manifest>('weights-manifest.json'));
}

/** The constructor arguments the manifest records for a model (clip_text, unet, controlnet). */
export function sdModelConfig(section: 'clip_text' | 'unet' | 'controlnet'): Record<string, unknown> {
  return sdManifest()[section].config;
}

/** Element i of the k-th state_dict tensor: the README's hash, uniform in [-1, 1), scaled by the rule. */
export function hashWeight(k: number, i: number, rule: WeightRule, fanIn?: number): number {
  let x = (Math.imul(i, 0x9E3779B1) + Math.imul(k, 0x85EBCA77) + 0x27D4EB2F) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7FEB352D) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846CA68B) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  const v = 2 * (x / 4294967296) - 1;
  switch (rule) {
    case 'norm_weight': return Math.fround(1 + 0.1 * v);
    case 'fan_in':
      if (!fanIn) throw new Error(`hashWeight: rule fan_in needs fan_in (tensor k=${k})`);
      return Math.fround((1 / Math.sqrt(fanIn)) * v);
    case 'embedding': return Math.fround(0.02 * v);
    case 'small': return Math.fround(0.01 * v);
    default: throw new Error(`hashWeight: unknown rule '${String(rule)}'`);
  }
}

function sha256(data: Float32Array): string {
  return crypto.createHash('sha256').update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).digest('hex');
}

/** The float32 values of one formula tensor, checked against its sha256. */
function formulaValues(e: { key: string; k: number; numel: number; rule: WeightRule; fan_in?: number; sha256: string }, section: string): Float32Array {
  const out = new Float32Array(e.numel);
  for (let i = 0; i < e.numel; i++) out[i] = hashWeight(e.k, i, e.rule, e.fan_in);
  const got = sha256(out);
  if (got !== e.sha256) throw new Error(`${section}.${e.key}: regenerated tensor's sha256 ${got} differs from the manifest's ${e.sha256}`);
  return out;
}

/**
 * A fixture model's state dict (key -> float32 Tensor, in the manifest's state_dict order),
 * regenerated from the formula and verified tensor by tensor. The tensors are kept (outside any
 * scope's reach); callers dispose them when done.
 */
export function sdFormulaWeights(section: SdManifestSection): Map<string, Tensor> {
  const m = sdManifest();
  const out = new Map<string, Tensor>();
  if (section === 'controlnet_from_unet') {
    const unet = new Map(m.unet.tensors.map((e) => [e.key, e]));
    for (const e of m.controlnet_from_unet.tensors) {
      let data: Float32Array;
      if (e.source === 'zero') data = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
      else if (e.source === 'unet') {
        const src = unet.get(e.unet_key ?? e.key);
        if (!src) throw new Error(`controlnet_from_unet.${e.key}: no UNet tensor '${e.unet_key}' in the manifest`);
        data = formulaValues(src, 'unet');
      } else {
        if (e.k === undefined || !e.rule || e.numel === undefined || !e.sha256) {
          throw new Error(`controlnet_from_unet.${e.key}: a formula entry needs k, rule, numel and sha256`);
        }
        data = formulaValues({ key: e.key, k: e.k, numel: e.numel, rule: e.rule, fan_in: e.fan_in, sha256: e.sha256 }, section);
      }
      out.set(e.key, torch.fromTypedArray(data, e.shape).keep());
    }
    return out;
  }
  for (const e of m[section].tensors) out.set(e.key, torch.fromTypedArray(formulaValues(e, section), e.shape).keep());
  return out;
}

/** Disposes every tensor of a map (formula weights once loaded into a model). */
export function disposeAll(m: Map<string, Tensor>): void {
  for (const t of m.values()) t.dispose();
}
