// `difftune sample` on a tiny model: bad flag values fail at once naming the flag (not a library
// function), and the output is checked writable before any sampling.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
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

test('sample: an --out that cannot be written fails before sampling, also under /proc (no endless mkdir)', () => {
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, '');
  // 1000 DDPM steps would take a while: the error must come first.
  const r = difftune(['sample', '--ckpt', ckpt, '--steps', '1000', '--out', path.join(file, 'grid.png')], { ok: false });
  assert.match(r.stderr, /--out .*a-file: cannot write there \(ENOTDIR/);
  assert.doesNotMatch(r.stdout, /sampling/);
  const proc = difftune(['sample', '--ckpt', ckpt, '--out', '/proc/difftune-test/x/grid.png'], { ok: false, timeoutMs: 60_000 });
  assert.match(proc.stderr, /--out \/proc\/difftune-test\/x: cannot write there/);
});

test('sample --out DIR/ writes one PNG per image, named by index and class', () => {
  const out = path.join(dir, 'pngs');
  const r = difftune(['sample', '--ckpt', ckpt, '--sampler', 'ddim', '--steps', '2', '--classes', '1,0,3', '--out', `${out}/`]);
  assert.match(r.stdout, /wrote 3 PNGs to/);
  assert.deepEqual(fs.readdirSync(out).sort(), ['000000-class1.png', '000001-class0.png', '000002-class3.png']);
  const png = fs.readFileSync(path.join(out, '000000-class1.png'));
  assert.equal(png.readUInt32BE(16), 8, 'width of the 8x8 model');
  assert.match(sample('--out', path.join(dir, 'x.jpg')).stderr, /--out must be a \.png grid, a \.safetensors file or a folder/);
});
