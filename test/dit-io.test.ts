import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { loadDiT, loadDiTWeights, readDiTConfig, saveDiT } from '../src/models/dit-io';
import { detectLayout, diffusersToOfficial, officialToDiffusers } from '../src/models/dit-keys';

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
  const ema = loadDiTWeights(ptFile);
  assert.ok(ema.warnings.some((w) => w.includes('argparse.Namespace')));
  const model = loadDiTWeights(ptFile, { key: 'model' });
  const bias = 'final_layer.linear.bias';
  assert.deepEqual(ema.stateDict.get(bias)!.toArray(), model.stateDict.get(bias)!.mul(2).toArray());
  const fwd = torch.loadSafetensors(path.join(ref, 'forward.safetensors'));
  const m = loadDiT(ptFile, { config, key: 'model' }).model.eval();
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
  const out = path.join(tmp, 'grid.png');
  execFileSync(process.execPath, [cli, 'sample', '--ckpt', path.join(ref, 'model.safetensors'), '--config',
    path.join(ref, 'config.json'), '--labels', '1,3', '--steps', '25', '--cfg', '4', '--seed', '0', '--out', out], { stdio: 'pipe' });
  assert.ok(fs.statSync(out).size > 100);
  const samples = torch.loadSafetensors(out.replace('.png', '.safetensors')).get('samples')!;
  const expected = torch.loadSafetensors(path.join(ref, 'sampling.safetensors')).get('ddpm_cfg.samples')!.slice(0, 0, 2);
  assert.ok(maxRel(samples, expected) <= 1e-4, `max rel error ${maxRel(samples, expected)}`);
});

test('difftune sample rejects bad input with a clear message', { skip }, () => {
  const run = (...args: string[]) => execFileSync(process.execPath, [cli, 'sample', ...args], { stdio: 'pipe' });
  assert.throws(() => run('--ckpt', path.join(ref, 'model.safetensors'), '--config', path.join(ref, 'config.json'), '--labels', '99'),
    (e: { stderr: Buffer }) => /--labels: '99' is not a class in 0\.\.9/.test(e.stderr.toString()));
  assert.throws(() => run('--bogus'), (e: { stderr: Buffer }) => /unknown option '--bogus'/.test(e.stderr.toString()));
});
