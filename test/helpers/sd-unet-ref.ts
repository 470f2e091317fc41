// Shared access to the sd-controlnet-ref goldens for the UNet and ControlNet suites: the fixture's
// tiny models with their formula weights, its inputs and outputs, and the README's error metric.
import assert from 'node:assert/strict';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { loadFixture } from './dit-ref';
import { disposeAll, SD_FIXTURES, sdFormulaWeights, sdModelConfig, skipUnlessSdFixtures } from './sd-formula-weights';
import { UNet2DConditionModel } from '../../src/models/sd/unet-2d-condition';
import { ControlNetModel } from '../../src/models/sd/controlnet';
import { controlNetConfigFromDiffusers, unetConfigFromDiffusers } from '../../src/models/sd/unet-config';

export const SD_REF_FILES = [
  'weights-manifest.json', 'sd-controlnet-ref.safetensors', 'sd-controlnet-ref-f64.safetensors', 'sd-controlnet-debug.safetensors',
  'sd15-unet-keys.json', 'sd15-controlnet-keys.json', 'sd15-ldm-key-map.json',
];

export function skipUnlessSdRef(what: string): false | string {
  return skipUnlessSdFixtures(SD_REF_FILES, what);
}

const cache = new Map<string, Map<string, Tensor>>();
/** A fixture file's tensors, loaded once per test file and kept. */
export function sdRef(name: 'sd-controlnet-ref.safetensors' | 'sd-controlnet-ref-f64.safetensors' | 'sd-controlnet-debug.safetensors'): Map<string, Tensor> {
  let m = cache.get(name);
  if (!m) cache.set(name, (m = loadFixture(SD_FIXTURES, name)));
  return m;
}

export function refTensor(name: Parameters<typeof sdRef>[0], key: string): Tensor {
  const t = sdRef(name).get(key);
  if (!t) throw new Error(`${name}: fixture tensor '${key}' is missing`);
  return t;
}

/** The fixture's inputs in float32 or float64. The float64 goldens got the float64 CLIP output as encoder_hidden_states. */
export function refInputs(dtype: 'float32' | 'float64'): { latent: Tensor; timesteps: Tensor; context: Tensor; cond: Tensor } {
  const g = (k: string): Tensor => refTensor('sd-controlnet-ref.safetensors', k);
  const cast = (t: Tensor): Tensor => (dtype === 'float64' ? t.double().keep() : t);
  return {
    latent: cast(g('input.latent')),
    timesteps: g('input.timesteps'),
    context: dtype === 'float64' ? refTensor('sd-controlnet-ref-f64.safetensors', 'clip.last_hidden_state') : g('input.encoder_hidden_states'),
    cond: cast(g('input.controlnet_cond')),
  };
}

/** The fixture's UNet (manifest config, formula weights), float32, eval mode. */
export function fixtureUNet(): UNet2DConditionModel {
  const model = new UNet2DConditionModel(unetConfigFromDiffusers(sdModelConfig('unet'), 'weights-manifest.json unet.config'));
  const weights = sdFormulaWeights('unet');
  model.loadStateDict(weights, { what: 'sd-controlnet-ref unet formula weights' });
  disposeAll(weights);
  return model;
}

/** The fixture's ControlNet (manifest config, formula weights), float32, eval mode. */
export function fixtureControlNet(): ControlNetModel {
  const model = new ControlNetModel(controlNetConfigFromDiffusers(sdModelConfig('controlnet'), 'weights-manifest.json controlnet.config'));
  const weights = sdFormulaWeights('controlnet');
  model.loadStateDict(weights, { what: 'sd-controlnet-ref controlnet formula weights' });
  disposeAll(weights);
  return model;
}

/** The README's metric: max|y - ref| / max|ref|, in float64. */
export function relErr(y: Tensor, ref: Tensor): number {
  return torch.scope(() => {
    assert.deepEqual(y.shape, ref.shape);
    const r = ref.double();
    return y.double().sub(r).abs().max().item() / r.abs().max().item();
  });
}

/** Errors met, printed by the suites as diagnostics. */
export const errorsSeen: string[] = [];

export function assertClose(y: Tensor, ref: Tensor, tol: number, what: string): void {
  const err = relErr(y, ref);
  errorsSeen.push(`${what} ${err.toExponential(1)}`);
  assert.ok(err <= tol, `${what}: rel max err ${err.toExponential(2)} > ${tol}`);
}
