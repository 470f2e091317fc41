// `difftune sample` on a tiny model: bad flag values fail at once naming the flag (not a library
// function), and the output is checked writable before any sampling.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { test } from 'node:test';
import { difftune } from './helpers/difftune-cli';
import { tempDir, writePretrained } from './helpers/train-fixture';

const dir = tempDir('cli-sample');
const ckpt = path.join(dir, 'model.safetensors');
writePretrained(ckpt);
const sample = (...args: string[]) => difftune(['sample', '--ckpt', ckpt, '--sampler', 'ddim', '--steps', '2', ...args], { ok: false });

test('sample: --n 0, --steps 0 and --steps abc are refused naming the flag', () => {
  assert.match(sample('--n', '0').stderr, /--n must be a whole number >= 1, got 0/);
  assert.match(sample('--steps', '0').stderr, /--steps '0' keeps no timestep/);
  assert.match(sample('--steps', 'abc').stderr, /--steps 'abc': cannot parse/);
  assert.match(sample('--batch', '2.5').stderr, /--batch must be a whole number >= 1/);
});
