// DiT forward passes against golden values from the official PyTorch code (shared/fixtures/dit-ref).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { loadSafetensors } from '../src/torch/serialization';
import { DiT, configFromModelArgs, createDiT, DIT_MODELS, get2dSincosPosEmbed } from '../src/models/dit';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'dit-ref');
const present = fs.existsSync(path.join(FIXTURES, 'model.safetensors'));
const skip = present ? false : `fixture ${FIXTURES} is absent`;
if (!present) console.log(`skipping DiT fixture tests: ${FIXTURES}/model.safetensors not found`);

const TOL = 1e-5;

function load(name: string): Map<string, Tensor> {
  const m = loadSafetensors(path.join(FIXTURES, name));
  for (const t of m.values()) t.keep();
  return m;
}

function get(m: Map<string, Tensor>, key: string): Tensor {
  const t = m.get(key);
  if (!t) throw new Error(`fixture tensor '${key}' is missing`);
  return t;
}

/** max|a - b| / max|ref| */
function relErr(a: Tensor, ref: Tensor): number {
  return torch.scope(() => {
    assert.deepEqual(a.shape, ref.shape);
    return a.sub(ref).abs().max().item() / ref.abs().max().item();
  });
}

function modelArgs(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, 'config.json'), 'utf8')).model_args;
}

let cached: { model: DiT; weights: Map<string, Tensor> } | undefined;
function fixtureModel(): { model: DiT; weights: Map<string, Tensor> } {
  if (!cached) {
    const weights = load('model.safetensors');
    const model = new DiT(configFromModelArgs(modelArgs()), { initialize: false });
    model.loadStateDict(weights, { what: 'dit-ref/model.safetensors' });
    model.eval();
    cached = { model, weights };
  }
  return cached;
}

test('config.json model_args map onto DiTConfig', { skip }, () => {
  const c = configFromModelArgs(modelArgs());
  assert.deepEqual(c, {
    inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 64, depth: 2, numHeads: 4, mlpRatio: 4,
    classDropoutProb: 0.1, numClasses: 10, learnSigma: true, useGamma: false,
  });
});

test('state dict keys, order and shapes equal the official DiT; strict load reports nothing', { skip }, () => {
  const weights = load('model.safetensors');
  const model = new DiT(configFromModelArgs(modelArgs()), { initialize: false });
  const own = model.stateDict();
  assert.deepEqual([...own.keys()], [...weights.keys()]);
  for (const [k, t] of own) assert.deepEqual(t.shape, get(weights, k).shape, k);
  const report = model.loadStateDict(weights);
  assert.deepEqual(report, { missing: [], unexpected: [], mismatched: [] });
  // pos_embed is in the state dict but not trainable.
  assert.equal(model.pos_embed.requiresGrad, false);
  assert.equal(model.parameters().filter((p) => p.requiresGrad).length, own.size - 1);
  // Strictness: a missing and an unexpected key are both reported.
  const broken = new Map(weights);
  broken.delete('blocks.1.attn.qkv.bias');
  broken.set('blocks.2.attn.qkv.bias', get(weights, 'blocks.0.attn.qkv.bias'));
  assert.throws(() => model.loadStateDict(broken), /missing keys \(1\): blocks\.1\.attn\.qkv\.bias[\s\S]*unexpected keys \(1\): blocks\.2\.attn\.qkv\.bias/);
  for (const t of weights.values()) t.dispose();
});

test('the computed sin-cos pos_embed equals the stored official value', { skip }, () => {
  torch.scope(() => {
    const weights = load('model.safetensors');
    const model = new DiT(configFromModelArgs(modelArgs()), { initialize: false });
    const stored = get(weights, 'pos_embed');
    assert.ok(relErr(model.pos_embed, stored) <= 1e-7, 'pos_embed differs');
    // The table: first half encodes w (column), second half h (row), each [sin | cos].
    const table = get2dSincosPosEmbed(8, 2); // tokens (h, w) = (0,0), (0,1), (1,0), (1,1)
    assert.deepEqual(Array.from(table.subarray(8, 16)).map((v) => +v.toFixed(12)),
      [Math.sin(1), Math.sin(1 / 100), Math.cos(1), Math.cos(1 / 100), 0, 0, 1, 1].map((v) => +v.toFixed(12)));
    for (const t of weights.values()) t.dispose();
  });
});

test('forward matches the official model (forward.safetensors)', { skip }, (t) => {
  const { model } = fixtureModel();
  const ref = load('forward.safetensors');
  torch.scope(() => torch.noGrad(() => {
    const out = model.forward(get(ref, 'x'), get(ref, 't'), get(ref, 'y'));
    const err = relErr(out, get(ref, 'out'));
    t.diagnostic(`forward rel err ${err.toExponential(2)}`);
    assert.ok(err <= TOL, `forward: ${err}`);
  }));
  for (const t of ref.values()) t.dispose();
});

test('forwardWithCfg matches the official forward_with_cfg (forward.safetensors)', { skip }, (t) => {
  const { model } = fixtureModel();
  const ref = load('forward.safetensors');
  torch.scope(() => torch.noGrad(() => {
    const scale = get(ref, 'cfg.scale').item();
    assert.equal(scale, 4);
    const out = model.forwardWithCfg(get(ref, 'cfg.x'), get(ref, 'cfg.t'), get(ref, 'cfg.y'), scale);
    const err = relErr(out, get(ref, 'cfg.out'));
    t.diagnostic(`forward_with_cfg rel err ${err.toExponential(2)}`);
    assert.ok(err <= TOL, `forwardWithCfg: ${err}`);
  }));
  for (const t of ref.values()) t.dispose();
});

test('forward and forwardWithCfg with power-of-two-scaled weights (forward_strong.safetensors)', { skip }, (t) => {
  const weights = load('model.safetensors');
  const ref = load('forward_strong.safetensors');
  const model = new DiT(configFromModelArgs(modelArgs()), { initialize: false });
  const strong = new Map<string, Tensor>();
  torch.noGrad(() => {
    for (const [k, w] of weights) {
      const e = get(ref, `log2_scale.${k}`).item();
      strong.set(k, w.mul(2 ** e).keep());
    }
  });
  model.loadStateDict(strong);
  model.eval();
  torch.scope(() => torch.noGrad(() => {
    const out = model.forward(get(ref, 'x'), get(ref, 't'), get(ref, 'y'));
    const err = relErr(out, get(ref, 'out'));
    const cfg = model.forwardWithCfg(get(ref, 'cfg.x'), get(ref, 'cfg.t'), get(ref, 'cfg.y'), get(ref, 'cfg.scale').item());
    const cfgErr = relErr(cfg, get(ref, 'cfg.out'));
    t.diagnostic(`forward_strong rel err ${err.toExponential(2)}, its forward_with_cfg ${cfgErr.toExponential(2)}`);
    assert.ok(err <= TOL, `forward_strong: ${err}`);
    assert.ok(cfgErr <= TOL, `forward_strong cfg: ${cfgErr}`);
  }));
  for (const m of [weights, ref, strong]) for (const t of m.values()) t.dispose();
});

test('forwardWithCfg guides only channels 0..2 by default; guideChannels "all" guides every eps channel', { skip }, () => {
  const { model } = fixtureModel();
  const ref = load('forward.safetensors');
  torch.scope(() => torch.noGrad(() => {
    const x = get(ref, 'cfg.x');
    const t = get(ref, 'cfg.t');
    const y = get(ref, 'cfg.y');
    const n = x.shape[0];
    const half = x.slice(0, 0, n / 2);
    const plain = model.forward(torch.cat([half, half]), t, y); // [4, 8, 8, 8]
    const cfg = model.forwardWithCfg(x, t, y, 4);
    // Channels 3.. (eps channel 3 and the variance half) are the unguided rows of each branch.
    assert.equal(cfg.slice(1, 3).sub(plain.slice(1, 3)).abs().max().item(), 0);
    // Channels 0..2: the guided half, written to both halves, and not the plain output.
    const g = cfg.slice(1, 0, 3);
    assert.equal(g.slice(0, 0, n / 2).sub(g.slice(0, n / 2)).abs().max().item(), 0);
    const cond = plain.slice(0, 0, n / 2).slice(1, 0, 3);
    const uncond = plain.slice(0, n / 2).slice(1, 0, 3);
    const expected = uncond.add(cond.sub(uncond).mul(4));
    assert.equal(g.slice(0, 0, n / 2).sub(expected).abs().max().item(), 0);
    assert.ok(g.sub(plain.slice(1, 0, 3)).abs().max().item() > 1e-3);
    // Channel 3 differs between the halves under the official rule ...
    const c3 = cfg.select(1, 3);
    assert.ok(c3.slice(0, 0, n / 2).sub(c3.slice(0, n / 2)).abs().max().item() > 0);
    // ... and is guided (equal halves) when every eps channel is.
    const all = model.forwardWithCfg(x, t, y, 4, { guideChannels: 'all' });
    const a3 = all.select(1, 3);
    assert.equal(a3.slice(0, 0, n / 2).sub(a3.slice(0, n / 2)).abs().max().item(), 0);
    assert.equal(all.slice(1, 0, 3).sub(g).abs().max().item(), 0);
    assert.equal(all.slice(1, 4).sub(plain.slice(1, 4)).abs().max().item(), 0);
  }));
  for (const t of ref.values()) t.dispose();
});

test('label dropout: forced drop ids select the null label; training drops at random, eval never', { skip }, () => {
  const { model } = fixtureModel();
  const ref = load('forward.safetensors');
  torch.scope(() => torch.noGrad(() => {
    const x = get(ref, 'x');
    const t = get(ref, 't');
    const y = get(ref, 'y'); // [1, 9, 10, 0]
    const force = torch.tensor([1, 0, 0, 1], { dtype: 'int64' });
    const forced = model.forward(x, t, y, { forceDropIds: force });
    const nulled = model.forward(x, t, torch.tensor([10, 9, 10, 10], { dtype: 'int64' }));
    assert.equal(forced.sub(nulled).abs().max().item(), 0);
    const emb = model.y_embedder;
    const labels = torch.arange(0, 10).repeat(100); // 1000 labels
    emb.train();
    const dropped = emb.tokenDrop(labels).eq(10).sum().item();
    assert.ok(dropped > 50 && dropped < 160, `dropped ${dropped} of 1000 at p = 0.1`);
    const out = emb.forward(labels, false);
    assert.equal(out.sub(torch.F.embedding(labels, emb.embedding_table.weight)).abs().max().item(), 0);
    emb.eval();
  }));
  for (const t of ref.values()) t.dispose();
});

test('named configs and official from-scratch initialisation', () => {
  assert.deepEqual(DIT_MODELS['DiT-XL/2'], { depth: 28, hiddenSize: 1152, numHeads: 16, patchSize: 2 });
  assert.deepEqual(DIT_MODELS['DiT-L/4'], { depth: 24, hiddenSize: 1024, numHeads: 16, patchSize: 4 });
  assert.deepEqual(DIT_MODELS['DiT-B/8'], { depth: 12, hiddenSize: 768, numHeads: 12, patchSize: 8 });
  assert.deepEqual(DIT_MODELS['DiT-S/2'], { depth: 12, hiddenSize: 384, numHeads: 6, patchSize: 2 });
  assert.equal(Object.keys(DIT_MODELS).length, 12);
  torch.scope(() => {
    torch.manualSeed(0);
    const m = createDiT('DiT-S/8', { inputSize: 16, numClasses: 7, depth: 2 });
    assert.equal(m.config.hiddenSize, 384);
    assert.equal(m.outChannels, 8);
    const sd = m.stateDict();
    assert.deepEqual(get(sd, 'y_embedder.embedding_table.weight').shape, [8, 384]);
    assert.deepEqual(get(sd, 'final_layer.linear.weight').shape, [8 * 8 * 8, 384]);
    const zero = ['blocks.0.adaLN_modulation.1.weight', 'blocks.1.adaLN_modulation.1.bias', 'final_layer.linear.weight',
      'final_layer.linear.bias', 'final_layer.adaLN_modulation.1.weight', 'blocks.0.attn.qkv.bias', 'x_embedder.proj.bias'];
    for (const k of zero) assert.equal(get(sd, k).abs().max().item(), 0, k);
    // xavier bound sqrt(6 / (fan_in + fan_out)); patch embed on the [out, in*k*k] view.
    const qkv = get(sd, 'blocks.0.attn.qkv.weight');
    assert.ok(qkv.abs().max().item() <= Math.sqrt(6 / (384 + 3 * 384)));
    assert.ok(qkv.abs().max().item() > 0.9 * Math.sqrt(6 / (384 + 3 * 384)));
    const pe = get(sd, 'x_embedder.proj.weight');
    const peBound = Math.sqrt(6 / (4 * 64 + 384));
    assert.ok(pe.abs().max().item() <= peBound && pe.abs().max().item() > 0.9 * peBound);
    const table = get(sd, 'y_embedder.embedding_table.weight');
    assert.ok(Math.abs(table.std().item() - 0.02) < 0.002);
    assert.ok(Math.abs(get(sd, 't_embedder.mlp.0.weight').std().item() - 0.02) < 0.002);
    // Zero-initialised output: the model predicts 0 at init.
    m.eval();
    const out = torch.noGrad(() => m.forward(torch.randn([2, 4, 16, 16]), torch.tensor([3, 500], { dtype: 'int64' }),
      torch.tensor([1, 7], { dtype: 'int64' })));
    assert.deepEqual(out.shape, [2, 8, 16, 16]);
    assert.equal(out.abs().max().item(), 0);
  });
});
