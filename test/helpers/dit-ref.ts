// Shared access to the golden DiT fixtures (shared/fixtures/dit-ref) for the test suites.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { configFromModelArgs, DiT } from '../../src/models/dit';

export const FIXTURES = path.join(__dirname, '..', '..', '..', '..', 'shared', 'fixtures', 'dit-ref');

/** false when every named fixture file exists, else the reason to skip (and a note in the log). */
export function skipUnless(files: string[], what: string): false | string {
  const present = files.every((f) => fs.existsSync(path.join(FIXTURES, f)));
  if (!present) console.log(`# skipping ${what}: fixtures in ${FIXTURES} not found`);
  return present ? false : `fixtures in ${FIXTURES} are absent`;
}

/** All tensors of a fixture file in `dir`, kept alive for the whole test file. */
export function loadFixture(dir: string, name: string): Map<string, Tensor> {
  const m = torch.loadSafetensors(path.join(dir, name));
  for (const t of m.values()) t.keep();
  return m;
}

/** All tensors of a dit-ref fixture file, kept alive for the whole test file. */
export function load(name: string): Map<string, Tensor> {
  return loadFixture(FIXTURES, name);
}

export function get(m: Map<string, Tensor>, key: string): Tensor {
  const t = m.get(key);
  if (!t) throw new Error(`fixture tensor '${key}' is missing`);
  return t;
}

/** The fixture's model_args from config.json. */
export function refModelArgs(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, 'config.json'), 'utf8')).model_args;
}

let cachedModel: DiT | undefined;
/** The reference DiT (model.safetensors) in eval mode, built once per test file. */
export function refModel(): DiT {
  if (!cachedModel) {
    const model = new DiT(configFromModelArgs(refModelArgs()), { initialize: false });
    const weights = load('model.safetensors');
    model.loadStateDict(weights, { what: 'dit-ref/model.safetensors' });
    for (const w of weights.values()) w.dispose();
    cachedModel = model.eval();
  }
  return cachedModel;
}

/** max|a - b| / max|ref| */
export function relErr(a: Tensor, ref: Tensor): number {
  return torch.scope(() => {
    assert.deepEqual(a.shape, ref.shape);
    return a.sub(ref).abs().max().item() / ref.abs().max().item();
  });
}
