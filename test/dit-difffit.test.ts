import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { configFromModelArgs, DiT, modelArgs } from '../src/models/dit';
import { loadDiT, saveDiT } from '../src/models/dit-io';
import { FIXTURES, load, refModelArgs, skipUnless } from './helpers/dit-ref';

const skip = skipUnless(['model.safetensors', 'forward.safetensors', 'config.json'], 'DiffFit tests');

function gammaModel(): DiT {
  const m = new DiT({ ...configFromModelArgs(refModelArgs()), useGamma: true }, { initialize: false });
  m.loadStateDict(torch.loadSafetensors(path.join(FIXTURES, 'model.safetensors')), { strict: false });
  return m.eval();
}

function run(m: DiT): torch.Tensor {
  const fwd = load('forward.safetensors');
  return torch.noGrad(() => m.forward(fwd.get('x')!, fwd.get('t')!, fwd.get('y')!));
}

test('DiffFit gammas sit in the first half of the blocks and inside their attention, named as the fork', { skip }, () => {
  const m = gammaModel();
  const keys = [...m.stateDict().keys()];
  assert.deepEqual(keys.filter((k) => k.includes('gamma')),
    ['blocks.0.gamma1', 'blocks.0.gamma2', 'blocks.0.attn.gamma1', 'blocks.0.attn.gamma2']);
  const at = keys.indexOf('blocks.0.gamma1');
  assert.deepEqual(keys.slice(at, at + 5), ['blocks.0.gamma1', 'blocks.0.gamma2', 'blocks.0.attn.gamma1',
    'blocks.0.attn.gamma2', 'blocks.0.attn.qkv.weight'], 'own parameters before submodules, as PyTorch orders them');
  assert.deepEqual(m.blocks.at(0).attn.gamma1!.shape, [192]);
  assert.deepEqual(modelArgs(m.config).use_gamma, true);
  assert.equal(modelArgs(configFromModelArgs(refModelArgs())).use_gamma, undefined, 'official configs stay official');
});

test('gammas of one leave the official output unchanged, bit for bit', { skip }, () => {
  const plain = new DiT(configFromModelArgs(refModelArgs()), { initialize: false });
  plain.loadStateDict(torch.loadSafetensors(path.join(FIXTURES, 'model.safetensors')));
  assert.deepEqual(run(gammaModel()).bytes(), run(plain.eval()).bytes());
});

test('a gamma scales exactly the branch it belongs to', { skip }, () => {
  const a = gammaModel();
  const b = gammaModel();
  torch.noGrad(() => {
    a.blocks.at(0).attn.gamma2!.fill_(0.5);
    b.blocks.at(0).attn.proj.weight.mul_(0.5);
    b.blocks.at(0).attn.proj.bias!.mul_(0.5);
  });
  assert.deepEqual(run(a).bytes(), run(b).bytes());
  const c = gammaModel();
  torch.noGrad(() => c.blocks.at(0).gamma2!.fill_(0));
  const d = gammaModel();
  torch.noGrad(() => { d.blocks.at(0).mlp.fc2.weight.zero_(); d.blocks.at(0).mlp.fc2.bias!.zero_(); });
  assert.deepEqual(run(c).bytes(), run(d).bytes());
  assert.notDeepEqual(run(c).bytes(), run(gammaModel()).bytes());
});

test('a checkpoint with gammas loads with them even when its config predates DiffFit', { skip }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-difffit-'));
  const m = gammaModel();
  torch.noGrad(() => m.blocks.at(0).attn.gamma1!.fill_(0.75));
  const file = path.join(tmp, 'fork.safetensors');
  saveDiT(file, m);
  const loaded = loadDiT(file, { config: configFromModelArgs(refModelArgs()) }).model;
  assert.equal(loaded.config.useGamma, true);
  assert.equal(loaded.config.gammaDepth, 1);
  assert.deepEqual(run(loaded.eval()).bytes(), run(m).bytes());
});
