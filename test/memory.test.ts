import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { DiT } from '../src/models/dit';

class Net extends torch.nn.Module {
  readonly fc1 = this.registerModule('fc1', new torch.nn.Linear(64, 256));
  readonly norm = this.registerModule('norm', new torch.nn.LayerNorm(256));
  readonly fc2 = this.registerModule('fc2', new torch.nn.Linear(256, 64));
  forward(x: Tensor): Tensor {
    const h = torch.F.gelu(this.norm.forward(this.fc1.forward(x)), 'tanh');
    return this.fc2.forward(h).add(x);
  }
}

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

test('scope frees what it does not return; kept and returned tensors survive', () => {
  const before = torch.liveTensorCount();
  const kept = torch.zeros([3]).keep();
  const out = torch.scope(() => {
    const a = torch.ones([3]);
    const b = a.mul(2);
    const inner = torch.scope(() => [b.add(1), { nested: b.sub(1) }] as const);
    assert.equal(a.isDisposed, false);
    return { sum: inner[0].add(inner[1].nested), extra: inner[0] };
  });
  assert.equal(out.sum.isDisposed, false);
  assert.equal(out.extra.isDisposed, false);
  assert.deepEqual(out.sum.toArray(), [4, 4, 4]);
  assert.equal(kept.isDisposed, false);
  assert.equal(torch.liveTensorCount(), before + 3);
  for (const t of [kept, out.sum, out.extra]) t.dispose();
  assert.equal(torch.liveTensorCount(), before);
});

test('scope frees everything when fn throws', () => {
  const before = torch.liveTensorCount();
  assert.throws(() => torch.scope(() => {
    const a = torch.ones([2, 3]);
    a.matmul(a);
  }), /cannot be multiplied/);
  assert.equal(torch.liveTensorCount(), before);
});

test('a disposed tensor cannot be used, and dispose is idempotent', () => {
  const a = torch.ones([2]);
  a.dispose();
  a.dispose();
  assert.throws(() => a.add(1), /disposed tensor/);
});

test('tensors dropped outside any scope are freed by the GC finalizer', async () => {
  const before = torch.liveTensorCount();
  for (let i = 0; i < 2000; i++) torch.ones([16]).add(1);
  assert.ok(torch.liveTensorCount() >= before, 'handles exist before collection');
  // Finalizers run after a GC; allocate pressure until they do.
  for (let round = 0; round < 50 && torch.liveTensorCount() > before + 100; round++) {
    const junk: unknown[] = [];
    for (let i = 0; i < 20000; i++) junk.push({ i, s: 'x'.repeat(20) });
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(torch.liveTensorCount() < before + 100, `finalizers freed the dropped tensors (live: ${torch.liveTensorCount() - before})`);
});

test('a 2,000-step training loop does not grow native handles or resident memory', () => {
  torch.manualSeed(0);
  const model = new Net();
  const opt = new torch.optim.AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0 });
  const x = torch.randn([32, 64]).keep();
  const target = torch.randn([32, 64]).keep();
  const step = () => torch.scope(() => {
    opt.zeroGrad();
    const loss = torch.F.mseLoss(model.forward(x), target);
    loss.backward();
    torch.optim.clipGradNorm_(model.parameters(), 1.0);
    opt.step();
    return loss.item();
  });
  for (let i = 0; i < 200; i++) step();
  const handles = torch.liveTensorCount();
  const rss = rssMiB();
  let loss = 0;
  for (let i = 200; i < 2000; i++) {
    loss = step();
    if (i % 500 === 0) assert.equal(torch.liveTensorCount(), handles, `live handles changed at step ${i}`);
  }
  assert.equal(torch.liveTensorCount(), handles);
  const growth = rssMiB() - rss;
  assert.ok(growth < 16, `resident memory grew by ${growth.toFixed(1)} MiB over 1,800 steps`);
  assert.ok(Number.isFinite(loss));
});

test('Module.dispose frees every parameter and buffer at once', () => {
  const before = torch.liveTensorCount();
  const model = new DiT({ inputSize: 8, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 2, numHeads: 2, numClasses: 4, classDropoutProb: 0.1 });
  const owned = model.parameters().length + model.namedBuffers().length;
  assert.ok(torch.liveTensorCount() >= before + owned);
  model.dispose();
  assert.equal(torch.liveTensorCount(), before);
  assert.ok([...model.parameters(), ...model.namedBuffers().map(([, b]) => b)].every((t) => t.isDisposed));
  assert.throws(() => model.parameters()[0].sum(), /use of a disposed tensor/);
});
