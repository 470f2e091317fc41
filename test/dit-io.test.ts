import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { createDiT, DIT_MODELS } from '../src/models/dit';
import { loadDiT, loadDiTWeights, readDiTConfig, saveDiT } from '../src/models/dit-io';
import { detectLayout, diffusersToOfficial, officialToDiffusers } from '../src/models/dit-keys';
import { writePretrained } from './helpers/train-fixture';

const ref = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'dit-ref');
const hasRef = fs.existsSync(path.join(ref, 'model.safetensors'));
const skip = hasRef ? false : 'shared/fixtures/dit-ref is not present';
const ptFile = path.join(__dirname, '..', '..', 'test', 'fixtures', 'dit', 'train_ckpt.pt');
const cli = path.join(__dirname, '..', 'src', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-dit-io-'));

function maxRel(a: torch.Tensor, b: torch.Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item() / b.abs().max().item());
}

test('the official layout maps to diffusers and back unchanged', { skip }, () => {
  const sd = torch.loadSafetensors(path.join(ref, 'model.safetensors'));
  const diffusers = officialToDiffusers(sd);
  assert.equal(detectLayout(diffusers.keys()), 'diffusers');
  assert.ok(diffusers.has('transformer_blocks.1.attn1.to_v.bias'));
  assert.ok(diffusers.has('transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight'));
  assert.deepEqual(diffusers.get('transformer_blocks.0.attn1.to_q.weight')!.shape, [64, 64]);
  const back = diffusersToOfficial(diffusers);
  assert.deepEqual([...back.keys()].sort(), [...sd.keys()].sort());
  for (const [k, t] of sd) assert.deepEqual(back.get(k)!.bytes(), t.bytes(), k);
});

test('a diffusers-layout file and our own file load to the same model outputs', { skip }, () => {
  const config = readDiTConfig(path.join(ref, 'config.json'));
  const own = path.join(tmp, 'own.safetensors');
  const first = loadDiT(path.join(ref, 'model.safetensors'), { config }).model;
  saveDiT(own, first);
  assert.deepEqual(readDiTConfig(own.replace('.safetensors', '.json')), config);
  const diffusersFile = path.join(tmp, 'diffusion_pytorch_model.safetensors');
  torch.saveSafetensors(diffusersFile, officialToDiffusers(first.stateDict()));
  const fwd = torch.loadSafetensors(path.join(ref, 'forward.safetensors'));
  const outputs = [own, diffusersFile].map((f) => {
    const m = loadDiT(f, { config }).model.eval();
    return torch.noGrad(() => m.forward(fwd.get('x')!, fwd.get('t')!, fwd.get('y')!));
  });
  assert.ok(maxRel(outputs[0], fwd.get('out')!) <= 1e-5);
  assert.deepEqual(outputs[1].bytes(), outputs[0].bytes());
});

test('an official training checkpoint (.pt) loads EMA by default, model on request', { skip }, () => {
  const config = readDiTConfig(path.join(ref, 'config.json'));
  // Its argparse.Namespace is refused unless asked for, then kept as a placeholder with a warning.
  assert.throws(() => loadDiTWeights(ptFile), /pickle global 'argparse\.Namespace' is not allowed.*--skip-unknown/);
  const ema = loadDiTWeights(ptFile, { skipUnknown: true });
  assert.ok(ema.warnings.some((w) => w.includes('argparse.Namespace')));
  const model = loadDiTWeights(ptFile, { key: 'model', skipUnknown: true });
  const bias = 'final_layer.linear.bias';
  assert.deepEqual(ema.stateDict.get(bias)!.toArray(), model.stateDict.get(bias)!.mul(2).toArray());
  const fwd = torch.loadSafetensors(path.join(ref, 'forward.safetensors'));
  const m = loadDiT(ptFile, { config, key: 'model', skipUnknown: true }).model.eval();
  const out = torch.noGrad(() => m.forward(fwd.get('x')!, fwd.get('t')!, fwd.get('y')!));
  assert.ok(maxRel(out, fwd.get('out')!) <= 1e-5);
});

test('missing and mis-shaped keys are listed; partial loading reports them', { skip }, () => {
  const config = { ...readDiTConfig(path.join(ref, 'config.json')), numClasses: 20 };
  assert.throws(() => loadDiT(path.join(ref, 'model.safetensors'), { config }),
    /y_embedder\.embedding_table\.weight: model has \[21,64\], .*model\.safetensors has \[11,64\]/);
  const { report } = loadDiT(path.join(ref, 'model.safetensors'), { config, partial: true });
  assert.deepEqual(report.mismatched.map((m) => m.key), ['y_embedder.embedding_table.weight']);
  const bad = path.join(tmp, 'notdit.safetensors');
  torch.saveSafetensors(bad, { foo: torch.zeros([2]) });
  assert.throws(() => loadDiTWeights(bad), /not DiT weights/);
  assert.throws(() => loadDiT(bad), /no model config given/);
});

test('difftune sample reproduces the official DDPM + CFG samples from the seed', { skip }, () => {
  const out = path.join(tmp, 'samples.safetensors');
  execFileSync(process.execPath, [cli, 'sample', '--ckpt', path.join(ref, 'model.safetensors'), '--config',
    path.join(ref, 'config.json'), '--classes', '1,3', '--steps', '25', '--cfg', '4', '--seed', '0', '--out', out], { stdio: 'pipe' });
  const samples = torch.loadSafetensors(out).get('samples')!;
  const expected = torch.loadSafetensors(path.join(ref, 'sampling.safetensors')).get('ddpm_cfg.samples')!.slice(0, 0, 2);
  assert.ok(maxRel(samples, expected) <= 1e-4, `max rel error ${maxRel(samples, expected)}`);
});

test('difftune sample rejects bad input with a clear message', { skip }, () => {
  const run = (...args: string[]) => execFileSync(process.execPath, [cli, 'sample', ...args], { stdio: 'pipe' });
  const ckpt = ['--ckpt', path.join(ref, 'model.safetensors'), '--config', path.join(ref, 'config.json')];
  assert.throws(() => run(...ckpt, '--classes', '99', '--out', path.join(tmp, 'x.safetensors')),
    (e: { stderr: Buffer }) => /--classes: '99' is not a class in 0\.\.9/.test(e.stderr.toString()));
  assert.throws(() => run(...ckpt, '--out', path.join(tmp, 'x.png')),
    (e: { stderr: Buffer }) => /4-channel latents, which need a VAE/.test(e.stderr.toString()));
  assert.throws(() => run(...ckpt, '--model', 'DiT-S/2'), (e: { stderr: Buffer }) => /either --config or --model/.test(e.stderr.toString()));
  assert.throws(() => run('--bogus'), (e: { stderr: Buffer }) => /unknown option '--bogus'/.test(e.stderr.toString()));
});

/** The parameter count of an official DiT, from its layer shapes (pos_embed included, as model.parameters()). */
function officialCount(D: number, L: number, p: number, C = 4, K = 1000, I = 32): number {
  const linear = (i: number, o: number) => i * o + o;
  const block = linear(D, 3 * D) + linear(D, D) + linear(D, 4 * D) + linear(4 * D, D) + linear(D, 6 * D);
  const tokens = (I / p) ** 2;
  return C * p * p * D + D + linear(256, D) + linear(D, D) + (K + 1) * D + tokens * D + L * block
    + linear(D, p * p * 2 * C) + linear(D, 2 * D);
}

test('official configs construct with the official parameter counts', () => {
  assert.equal(officialCount(1152, 28, 2), 675_129_632, 'the formula matches the published DiT-XL/2 count');
  for (const name of ['DiT-S/2', 'DiT-S/8', 'DiT-B/4'] as const) {
    const { depth, hiddenSize, patchSize } = DIT_MODELS[name];
    const m = createDiT(name, {}, { initialize: false });
    assert.equal(m.numParameters(), officialCount(hiddenSize, depth, patchSize), name);
    for (const p of m.parameters()) p.dispose();
  }
});

test('DiT-XL/2 has 675,129,632 parameters', () => {
  const m = createDiT('DiT-XL/2', {}, { initialize: false });
  assert.equal(m.numParameters(), 675_129_632);
  for (const p of m.parameters()) p.dispose();
});

test('a truncated or hostile checkpoint gives a clear error naming the file', { skip }, () => {
  const bytes = fs.readFileSync(path.join(ref, 'model.safetensors'));
  const cut = path.join(tmp, 'cut.safetensors');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
  assert.throws(() => loadDiT(cut, { config: readDiTConfig(path.join(ref, 'config.json')) }), /cut\.safetensors.*(truncat|beyond|end of)/i);
  const hostile = path.join(__dirname, '..', '..', 'test', 'fixtures', 'pt', 'hostile_os_system_zip.pt');
  assert.throws(() => loadDiTWeights(hostile), /hostile_os_system_zip\.pt.*(system)/);
});

test('a missing weights file is named as missing, not as a missing config', () => {
  const file = path.join(tmp, 'no-such-model.safetensors');
  assert.throws(() => loadDiT(file), /no-such-model\.safetensors: file does not exist/);
});

test("an exported model loads with its config from the file's metadata when the .json beside it is gone", () => {
  const file = path.join(tmp, 'alone', 'model.safetensors');
  const saved = writePretrained(file);
  fs.rmSync(file.replace(/\.safetensors$/, '.json'));
  const { model } = loadDiT(file);
  assert.deepEqual(model.config, saved.config);
  assert.ok(model.stateDict().get('final_layer.linear.weight')!.equal(saved.stateDict().get('final_layer.linear.weight')!));
  // Without metadata either, the message asks for a config.
  const bare = path.join(tmp, 'alone', 'bare.safetensors');
  torch.saveSafetensors(bare, saved.stateDict());
  assert.throws(() => loadDiT(bare), /no model config given/);
});
