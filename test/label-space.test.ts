import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { DiT, DiTConfig } from '../src/models/dit';
import { adaptLabelSpace, nullLabel } from '../src/models/label-space';
import { applyPeft } from '../src/models/peft';

const CONFIG: Partial<DiTConfig> = {
  inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 4, numClasses: 10, learnSigma: true,
};
const TABLE = 'y_embedder.embedding_table.weight';

/** A stand-in pretrained DiT: every tensor random, so each label row changes the output. */
function pretrained(): DiT {
  const gen = new torch.Generator('cpu', 4321);
  const m = new DiT(CONFIG, { initialize: false });
  torch.noGrad(() => {
    for (const [name, p] of m.stateDict()) if (name !== 'pos_embed') p.copy_(torch.scope(() => torch.randn(p.shape, { generator: gen }).mul(0.2)));
  });
  return m.eval();
}

const gen = new torch.Generator('cpu', 9);
const x = torch.randn([2, 4, 8, 8], { generator: gen }).keep();
const t = torch.tensor([20, 700], { dtype: 'int64' }).keep();

function run(m: DiT, label: number): Tensor {
  return torch.noGrad(() => m.forward(x, t, torch.tensor([label, label], { dtype: 'int64' }))).keep();
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item());
}

test("'reuse' keeps the pretrained rows for labels below K and the null label numClasses", () => {
  const m = pretrained();
  const before = [0, 3, 6, 10].map((y) => run(m, y));
  const adapted = adaptLabelSpace(m, 7, 'reuse');
  assert.equal(adapted.config.numClasses, 10);
  assert.equal(nullLabel(adapted), 10);
  [0, 3, 6, 10].forEach((y, i) => assert.equal(maxAbsDiff(run(adapted, y), before[i]), 0, `label ${y}`));
  assert.throws(() => adaptLabelSpace(m, 11, 'reuse'), /only 10 \(use mode 'fresh'/);
  assert.throws(() => adaptLabelSpace(m, 0, 'reuse'), /positive integer, got 0/);
  assert.throws(() => adaptLabelSpace(m, 3, 'new' as never), /unknown mode 'new'/);
});

test("'fresh' builds K new rows and keeps the pretrained null row, so the unconditional output is unchanged", () => {
  for (const K of [5, 40]) {
    const m = pretrained();
    m.x_embedder.proj.bias!.requiresGrad = false;
    const oldTable = torch.noGrad(() => m.y_embedder.embedding_table.weight.clone()).keep();
    const uncond = run(m, 10);
    const cond = run(m, 0);
    torch.manualSeed(5);
    const f = adaptLabelSpace(m, K, 'fresh');
    assert.notEqual(f, m);
    assert.equal(f.config.numClasses, K);
    assert.equal(nullLabel(f), K);
    assert.equal(f.training, false, 'keeps eval mode');
    const table = f.y_embedder.embedding_table.weight;
    assert.deepEqual(table.shape, [K + 1, 32]);
    assert.equal(maxAbsDiff(table.slice(0, K, K + 1), oldTable.slice(0, 10, 11)), 0, 'null row copied');
    const std = torch.scope(() => table.slice(0, 0, K).std().item());
    const mean = torch.scope(() => table.slice(0, 0, K).mean().item());
    // K*32 >= 160 draws of N(0, 0.02^2): the sample std is 0.02 within 5 standard errors.
    assert.ok(Math.abs(std - 0.02) < 5 * 0.02 / Math.sqrt(2 * K * 32), `new rows std ${std}`);
    assert.ok(Math.abs(mean) < 5 * 0.02 / Math.sqrt(K * 32), `new rows mean ${mean}`);
    assert.equal(maxAbsDiff(run(f, K), uncond), 0, 'unconditional output identical');
    assert.ok(maxAbsDiff(run(f, 0), cond) > 1e-3, 'class 0 is a new class');
    for (const [name, v] of m.stateDict()) {
      if (name !== TABLE) assert.equal(maxAbsDiff(f.stateDict().get(name)!, v), 0, name);
      assert.equal(f.stateDict().get(name)!.requiresGrad, v.requiresGrad, `requiresGrad of ${name}`);
    }
    // The pretrained model is left as it was.
    assert.equal(m.config.numClasses, 10);
    assert.equal(maxAbsDiff(m.y_embedder.embedding_table.weight, oldTable), 0);
  }
});

test("'fresh' without a null row, after PEFT, and nullLabel without guidance get clear errors or plain tables", () => {
  const noCfg = new DiT({ ...CONFIG, classDropoutProb: 0 });
  assert.throws(() => nullLabel(noCfg), /no null label \(classDropoutProb is 0/);
  const f = adaptLabelSpace(noCfg, 3, 'fresh');
  assert.deepEqual(f.y_embedder.embedding_table.weight.shape, [3, 32]);
  const adapted = pretrained();
  applyPeft(adapted, { method: 'lora' });
  assert.throws(() => adaptLabelSpace(adapted, 3, 'fresh'), /before applyPeft/);
});
