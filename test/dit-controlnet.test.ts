// DiT-ControlNet: zero initialisation leaves the base model's output bit for bit, only the branch
// receives gradients, files round-trip under the base's names plus `controlnet.`, bad inputs and
// files are refused with messages that name them.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { DiT } from '../src/models/dit';
import { DiTControlNet, loadDiTControlNet, saveDiTControlNet } from '../src/models/dit-controlnet';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { tempDir } from './helpers/train-fixture';

/** A small DiT with every parameter non-zero (a trained model's gates and output layer are not zero). */
function trainedLikeBase(seed = 0): DiT {
  torch.manualSeed(seed);
  const m = new DiT({ inputSize: 8, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 3, numHeads: 2, numClasses: 4, classDropoutProb: 0.1 });
  torch.noGrad(() => {
    for (const [, p] of m.namedParameters()) if (p.requiresGrad) p.add_(torch.scope(() => torch.randn(p.shape).mul(0.1)));
  });
  return m;
}

function inputs(seed: number, condChannels = 1): { x: Tensor; t: Tensor; y: Tensor; cond: Tensor } {
  const g = new torch.Generator('cpu', seed);
  return {
    x: torch.randn([4, 3, 8, 8], { generator: g }),
    t: torch.tensor([0, 250, 600, 999], { dtype: 'int64' }),
    y: torch.tensor([0, 1, 4, 3], { dtype: 'int64' }),
    cond: torch.rand([4, condChannels, 8, 8], { generator: g }).mul(2).sub(1),
  };
}

test('at initialisation the ControlNet output equals the base DiT bit for bit, with or without a condition', () => {
  const base = trainedLikeBase().eval();
  const cn = DiTControlNet.fromBase(base, { numBlocks: 2, conditionChannels: 1, condition: 'canny' }).eval();
  for (const seed of [1, 2, 3]) {
    const { x, t, y, cond } = inputs(seed);
    torch.noGrad(() => {
      const want = base.forward(x, t, y);
      assert.ok(want.abs().sum().item() > 0, 'the base output is not trivially zero');
      assert.ok(cn.forward(x, t, y, { condition: cond }).equal(want), `seed ${seed}: controlled output differs from the base`);
      assert.ok(cn.forward(x, t, y).equal(want), `seed ${seed}: uncontrolled output differs from the base`);
    });
  }
  // The copied blocks start as the base's first blocks; the zero layers at zero.
  const sd = cn.stateDict();
  for (const [k, p] of base.blocks.at(1).namedParameters('blocks.1')) assert.ok(sd.get(`controlnet.${k}`)!.equal(p), `controlnet.${k} copies ${k}`);
  for (const k of ['controlnet.cond_embedder.proj.weight', 'controlnet.cond_embedder.proj.bias', 'controlnet.zero_linears.0.weight', 'controlnet.zero_linears.1.bias']) {
    assert.equal(torch.scope(() => sd.get(k)!.abs().max().item()), 0, `${k} starts at zero`);
  }
  assert.ok(!sd.has('controlnet.blocks.2.attn.qkv.weight'), 'only numBlocks blocks are copied');
});

test('gradients reach only the control branch; once the zero linears move, every branch tensor gets one', () => {
  const base = trainedLikeBase(4);
  const cn = DiTControlNet.fromBase(base, { numBlocks: 2, conditionChannels: 3, condition: null });
  const trainable = cn.namedParameters().filter(([, p]) => p.requiresGrad).map(([k]) => k);
  assert.deepEqual(trainable, cn.namedParameters().map(([k]) => k).filter((k) => k.startsWith('controlnet.')));
  const { x, t, y, cond } = inputs(5, 3);
  const lossOf = (): void => torch.scope(() => cn.forward(x, t, y, { condition: cond }).square().mean()).backward();
  lossOf();
  const grads = (): Map<string, number> => new Map(cn.namedParameters().map(([k, p]) => [k, p.grad ? torch.scope(() => p.grad!.abs().sum().item()) : -1]));
  let g = grads();
  for (const [k, v] of g) if (!k.startsWith('controlnet.')) assert.equal(v, -1, `${k} (frozen base) has no gradient`);
  assert.ok(g.get('controlnet.zero_linears.0.weight')! > 0, 'the zero linear gets a gradient at once');
  // Zero linears at zero block the gradient to what lies before them (as ControlNet's zero convolutions).
  assert.equal(g.get('controlnet.cond_embedder.proj.weight'), 0);
  cn.zeroGrad();
  torch.noGrad(() => {
    for (const l of cn.controlnet.zero_linears) l.weight.copy_(torch.scope(() => torch.randn(l.weight.shape).mul(0.05)));
  });
  lossOf();
  g = grads();
  for (const [k, v] of g) {
    if (k.startsWith('controlnet.')) assert.ok(v > 0, `${k} gets a gradient`);
    else assert.equal(v, -1, `${k} stays frozen`);
  }
});

test('save and load: base names plus controlnet.*, config JSON, identical outputs; bad files are refused', () => {
  const dir = tempDir('cn-io');
  const cn = DiTControlNet.fromBase(trainedLikeBase(6), { numBlocks: 1, conditionChannels: 1, condition: 'grayscale' });
  torch.noGrad(() => {
    for (const [k, p] of cn.namedParameters()) if (k.startsWith('controlnet.')) p.add_(torch.scope(() => torch.randn(p.shape).mul(0.02)));
  });
  const file = path.join(dir, 'cn.safetensors');
  saveDiTControlNet(file, cn);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'cn.json'), 'utf8'));
  assert.deepEqual(json.controlnet, { num_blocks: 1, condition_channels: 1, condition: 'grayscale' });
  assert.equal(json.model_args.depth, 3);
  const keys = [...torch.loadSafetensors(file).keys()];
  for (const k of ['x_embedder.proj.weight', 'blocks.2.mlp.fc2.bias', 'controlnet.cond_embedder.proj.weight', 'controlnet.blocks.0.attn.qkv.weight', 'controlnet.zero_linears.0.weight']) {
    assert.ok(keys.includes(k), `file has ${k}`);
  }
  const { model } = loadDiTControlNet(file);
  assert.deepEqual(model.control, cn.control);
  for (const [k, t] of cn.stateDict()) assert.ok(model.stateDict().get(k)!.equal(t), `${k} round-trips`);
  assert.ok(model.namedParameters().every(([k, p]) => p.requiresGrad === k.startsWith('controlnet.')), 'loaded base is frozen');
  const { x, t, y, cond } = inputs(7);
  torch.noGrad(() => assert.ok(model.eval().forward(x, t, y, { condition: cond }).equal(cn.eval().forward(x, t, y, { condition: cond }))));

  // A plain DiT config is not a ControlNet's.
  fs.writeFileSync(path.join(dir, 'cn.json'), JSON.stringify({ model: 'DiT', model_args: json.model_args }));
  assert.throws(() => loadDiTControlNet(file), /cn\.json: 'model' must be "DiT-ControlNet"/);
  fs.writeFileSync(path.join(dir, 'cn.json'), JSON.stringify({ ...json, controlnet: { ...json.controlnet, num_blocks: 0 } }));
  assert.throws(() => loadDiTControlNet(file), /'controlnet\.num_blocks' must be a positive integer/);
  fs.writeFileSync(path.join(dir, 'cn.json'), JSON.stringify({ ...json, controlnet: { ...json.controlnet, num_blocks: 2 } }));
  assert.throws(() => loadDiTControlNet(file), /missing keys .*controlnet\.blocks\.1\./);
  fs.rmSync(path.join(dir, 'cn.json'));
  assert.throws(() => loadDiTControlNet(file), /no cn\.json beside it/);
});

test('a condition of the wrong shape and an impossible branch depth are refused', () => {
  const base = trainedLikeBase(8);
  assert.throws(() => DiTControlNet.fromBase(base, { numBlocks: 4, conditionChannels: 1, condition: null }), /numBlocks must be an integer in 1\.\.3/);
  const cn = DiTControlNet.fromBase(base, { numBlocks: 1, conditionChannels: 1, condition: null });
  const { x, t, y } = inputs(9);
  assert.throws(() => cn.forward(x, t, y, { condition: torch.zeros([4, 3, 8, 8]) }), /condition must be \[4, 1, 8, 8\], got \[4, 3, 8, 8\]/);
});

test('a forward pass leaves no tensors behind', () => {
  const cn = DiTControlNet.fromBase(trainedLikeBase(10), { numBlocks: 2, conditionChannels: 1, condition: null });
  const { x, t, y, cond } = inputs(11);
  const live = torch.liveTensorCount();
  for (let i = 0; i < 3; i++) torch.scope(() => { cn.forward(x, t, y, { condition: cond }).square().mean().backward(); });
  cn.zeroGrad();
  // Gradients of the branch are the only new tensors (and zeroGrad keeps them allocated).
  const grads = cn.parameters().filter((p) => p.grad).length;
  assert.equal(torch.liveTensorCount(), live + grads);
});
