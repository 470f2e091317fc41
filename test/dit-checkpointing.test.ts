// Gradient checkpointing of the DiT blocks: the loss and every parameter gradient equal those of the
// plain forward (float64 to 1e-12, float32 to 1e-6) over accumulated microsteps, with label dropout,
// learned sigma, DiffFit gammas and LoRA / AdaptFormer adapters; peak memory drops; nothing leaks;
// a forgotten second phase is an error.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { DiT, DiTConfig } from '../src/models/dit';
import { applyPeft, PeftMethod } from '../src/models/peft';
import { configHash, resolveConfig } from '../src/tuning/config';
import { estimateMemory } from '../src/tuning/plan';

const SMALL: Partial<DiTConfig> = {
  inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 4, numHeads: 4, mlpRatio: 2,
  numClasses: 10, classDropoutProb: 0.3, learnSigma: true,
};

/** A small DiT with every parameter moved off its (partly zero) initialisation, so every gradient is informative. */
function model(o: { dtype: 'float32' | 'float64'; useGamma?: boolean; peft?: PeftMethod }): DiT {
  torch.manualSeed(1);
  const m = new DiT({ ...SMALL, useGamma: o.useGamma ?? false }).to(o.dtype);
  if (o.peft) applyPeft(m, { method: o.peft, loraRank: 2, adapterDim: 4 });
  torch.noGrad(() => torch.scope(() => {
    for (const p of m.parameters()) p.add_(torch.randn(p.shape, { dtype: o.dtype }).mul(0.1));
  }));
  return m.train();
}

/** A parameter's accumulated gradient as numbers. */
function gradOf(p: torch.Tensor, what = 'the parameter'): Float64Array {
  const g = p.grad;
  assert.ok(g, `${what} has a gradient`);
  const out = Float64Array.from(g.toArray().flat(Infinity) as number[]);
  g.dispose();
  return out;
}

function maxDiff(a: Float64Array, b: Float64Array): number {
  return a.reduce((s, v, i) => Math.max(s, Math.abs(v - b[i])), 0);
}

interface Run {
  losses: number[];
  grads: Map<string, Float64Array>;
  /** A draw from the generator after the run: equal when both runs drew the same random numbers. */
  nextRandom: number;
}

/** Two accumulated microsteps (loss / 2 each) of a diffusion-like regression, labels dropped at random. */
function train(m: DiT, checkpointing: boolean): Run {
  for (const p of m.parameters()) p.grad = null;
  m.gradCheckpointing = checkpointing;
  const dtype = m.pos_embed.dtype as 'float32' | 'float64';
  torch.manualSeed(7);
  const losses: number[] = [];
  for (let micro = 0; micro < 2; micro++) {
    losses.push(torch.scope(() => {
      const x = torch.randn([5, 4, 8, 8], { dtype });
      const target = torch.randn([5, 8, 8, 8], { dtype });
      const t = torch.tensor([3, 250, 999, 17, 600], { dtype: 'int64' }).add(micro);
      const y = torch.tensor([0, 1, 2, 9, 4], { dtype: 'int64' });
      const loss = m.forward(x, t, y).sub(target).square().mean();
      loss.div(2).backward();
      m.backwardCheckpointed();
      return loss.item();
    }));
  }
  const grads = new Map<string, Float64Array>();
  for (const [name, p] of m.namedParameters()) {
    if (!p.requiresGrad) continue;
    grads.set(name, gradOf(p, `${name} (checkpointing ${checkpointing})`));
  }
  const nextRandom = torch.scope(() => torch.rand([1]).item());
  return { losses, grads, nextRandom };
}

function assertSameRun(plain: Run, ckpt: Run, tol: number, what: string): void {
  assert.equal(ckpt.nextRandom, plain.nextRandom, `${what}: the recompute draws no random numbers`);
  for (let i = 0; i < plain.losses.length; i++) {
    assert.ok(Math.abs(plain.losses[i] - ckpt.losses[i]) <= tol * Math.abs(plain.losses[i]), `${what}: loss ${i}`);
  }
  assert.deepEqual([...ckpt.grads.keys()], [...plain.grads.keys()]);
  let informative = 0;
  for (const [name, a] of plain.grads) {
    const b = ckpt.grads.get(name)!;
    const scale = maxDiff(a, new Float64Array(a.length));
    if (scale > 0) informative++;
    const err = maxDiff(a, b);
    assert.ok(err <= tol * Math.max(scale, 1e-3), `${what}: ${name} max error ${err} (scale ${scale})`);
  }
  assert.ok(informative >= plain.grads.size - 1, `${what}: gradients are non-zero (${informative}/${plain.grads.size})`);
}

for (const variant of [
  { name: 'plain DiT', useGamma: false },
  { name: 'DiffFit gammas (all trained)', useGamma: true },
  { name: 'DiffFit PEFT (frozen blocks but biases, gammas, label table)', useGamma: true, peft: 'difffit' as const },
  { name: 'LoRA (frozen embedders: no gradient into them)', peft: 'lora' as const },
  { name: 'AdaptFormer', peft: 'adaptformer' as const },
]) {
  test(`checkpointed gradients equal the plain ones, float64 to 1e-12: ${variant.name}`, () => {
    const m = model({ dtype: 'float64', useGamma: variant.useGamma, peft: variant.peft });
    assertSameRun(train(m, false), train(m, true), 1e-12, variant.name);
  });
}

test('checkpointed gradients equal the plain ones in float32 to 1e-6', () => {
  const m = model({ dtype: 'float32', useGamma: true });
  assertSameRun(train(m, false), train(m, true), 1e-6, 'float32');
});

test('the recompute replays the forward\'s autocast (bf16 on the CPU): equal gradients, unlike float32 ones', () => {
  const m = model({ dtype: 'float32' });
  const qkvGrad = (checkpointing: boolean, bf16: boolean): Float64Array => {
    for (const p of m.parameters()) p.grad = null;
    m.gradCheckpointing = checkpointing;
    torch.manualSeed(3);
    torch.scope(() => {
      const x = torch.randn([3, 4, 8, 8]);
      const t = torch.tensor([5, 50, 500], { dtype: 'int64' });
      const y = torch.tensor([1, 2, 3], { dtype: 'int64' });
      const loss = (): torch.Tensor => m.forward(x, t, y).square().mean();
      // As the trainer: forward under autocast, both backward phases after it.
      (bf16 ? torch.autocast(loss, { deviceType: 'cpu', dtype: 'bfloat16' }) : loss()).backward();
      m.backwardCheckpointed();
    });
    return gradOf(m.blocks.at(1).attn.qkv.weight);
  };
  const plain32 = qkvGrad(false, false);
  const plain16 = qkvGrad(false, true);
  const ckpt16 = qkvGrad(true, true);
  const scale = maxDiff(plain32, new Float64Array(plain32.length));
  assert.ok(maxDiff(plain32, plain16) > 1e-3 * scale, 'bf16 autocast changes the gradients');
  assert.ok(maxDiff(plain16, ckpt16) <= 1e-6 * scale, `bf16: checkpointed vs plain ${maxDiff(plain16, ckpt16)} (scale ${scale})`);
});

test('two checkpointed forwards before one backward: the second phase handles both', () => {
  const m = model({ dtype: 'float64' });
  const grads = (checkpointing: boolean): Float64Array => {
    for (const p of m.parameters()) p.grad = null;
    m.gradCheckpointing = checkpointing;
    torch.manualSeed(3);
    torch.scope(() => {
      const x = torch.randn([2, 4, 8, 8], { dtype: 'float64' });
      const t = torch.tensor([5, 500], { dtype: 'int64' });
      const a = m.forward(x, t, torch.tensor([1, 2], { dtype: 'int64' }));
      const b = m.forward(x.flip([3]), t, torch.tensor([3, 4], { dtype: 'int64' }));
      a.square().mean().add(b.mul(a).mean()).backward();
      m.backwardCheckpointed();
    });
    return gradOf(m.blocks.at(0).attn.qkv.weight);
  };
  const plain = grads(false);
  const ckpt = grads(true);
  const err = maxDiff(plain, ckpt);
  assert.ok(err < 1e-12 && plain.some((v) => v !== 0), `max error ${err}`);
});

test('outside training (eval mode or no grad) checkpointing does nothing', () => {
  const m = model({ dtype: 'float32' });
  m.gradCheckpointing = true;
  const x = torch.randn([2, 4, 8, 8]).keep();
  const t = torch.tensor([5, 500], { dtype: 'int64' }).keep();
  const y = torch.tensor([1, 2], { dtype: 'int64' }).keep();
  const before = torch.liveTensorCount();
  torch.scope(() => {
    torch.noGrad(() => m.forward(x, t, y));
    m.eval();
    const out = m.forward(x, t, y);
    assert.ok(out.gradFn, 'an eval-mode forward with grad keeps its ordinary graph');
  });
  assert.equal(torch.liveTensorCount(), before, 'no checkpoint was kept');
  m.backwardCheckpointed(); // nothing pending: a no-op
  for (const v of [x, t, y]) v.dispose();
});

test('a forgotten second phase makes the next forward throw; calling it recovers', () => {
  const m = model({ dtype: 'float32' });
  m.gradCheckpointing = true;
  torch.scope(() => {
    const x = torch.randn([2, 4, 8, 8]);
    const t = torch.tensor([5, 500], { dtype: 'int64' });
    const y = torch.tensor([1, 2], { dtype: 'int64' });
    m.forward(x, t, y).square().mean().backward();
    assert.equal(m.blocks.at(1).mlp.fc1.weight.grad, null, 'the blocks have no gradients before the second phase');
    assert.throws(() => m.forward(x, t, y), /backwardCheckpointed\(\) was not called/);
    m.eval();
    assert.throws(() => torch.noGrad(() => m.forward(x, t, y)), /backwardCheckpointed/, 'sampling is refused too');
    m.train();
    m.backwardCheckpointed();
    const g = m.blocks.at(1).mlp.fc1.weight.grad;
    assert.ok(g && g.abs().sum().item() > 0);
    m.forward(x, t, y);
  });
  m.backwardCheckpointed(); // the last forward had no backward: its checkpoint is freed
});

test('a checkpointed training loop keeps the live tensor count constant', () => {
  const m = model({ dtype: 'float32', peft: 'lora' });
  m.gradCheckpointing = true;
  const opt = new torch.optim.AdamW([...m.parameters()].filter((p) => p.requiresGrad), { lr: 1e-3 });
  const step = (): void => torch.scope(() => {
    const x = torch.randn([3, 4, 8, 8]);
    const t = torch.tensor([5, 50, 500], { dtype: 'int64' });
    const y = torch.tensor([1, 2, 3], { dtype: 'int64' });
    for (let micro = 0; micro < 2; micro++) {
      m.forward(x, t, y).square().mean().div(2).backward();
      m.backwardCheckpointed();
    }
    opt.step();
    opt.zeroGrad();
  });
  step();
  const counts: number[] = [];
  for (let i = 0; i < 4; i++) {
    step();
    counts.push(torch.liveTensorCount());
  }
  assert.deepEqual(counts, counts.map(() => counts[0]), `live tensors per step: ${counts}`);
});

test('checkpointing lowers the peak memory of a training step (fresh processes, 8 blocks)', () => {
  const child = path.join(__dirname, 'helpers', 'checkpoint-memory-child.js');
  const measure = (checkpointing: boolean): { afterForward: number; step: number } => {
    const r = spawnSync(process.execPath, [child, JSON.stringify({ checkpointing })], { encoding: 'utf8' });
    assert.equal(r.status, 0, `child: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const plain = measure(false);
  const ckpt = measure(true);
  // Saved activations are ~25 MiB per block (~200 MiB in all); checkpointing keeps 0.5 MiB per block.
  assert.ok(plain.afterForward > 120, `plain forward grew ${plain.afterForward} MiB`);
  assert.ok(ckpt.afterForward < 0.4 * plain.afterForward, `after forward: ${ckpt.afterForward} vs ${plain.afterForward} MiB`);
  assert.ok(ckpt.step < 0.6 * plain.step, `whole step: ${ckpt.step} vs ${plain.step} MiB`);
});

test('model.gradCheckpointing: off by default, resumable, and the memory plan counts checkpointed activations', () => {
  const values = { method: 'full', model: { ckpt: 'x.safetensors' }, data: { target: 'images' } };
  const off = resolveConfig({ values });
  const on = resolveConfig({ values, overrides: [['model.gradCheckpointing', 'true']] });
  assert.equal(off.model.gradCheckpointing, false);
  assert.equal(on.model.gradCheckpointing, true);
  assert.equal(configHash(on), configHash(off), 'switching it does not change what a run learns, so a run resumes across it');
  const m = new DiT({ ...SMALL, depth: 8 });
  const planOff = estimateMemory(m, off, null);
  const planOn = estimateMemory(m, on, null);
  assert.equal(planOn.checkpointing, true);
  assert.ok(planOn.activations < planOff.activations / 2, `${planOn.activations} vs ${planOff.activations}`);
  assert.throws(() => resolveConfig({ values, overrides: [['model.gradCheckpointing', 'maybe']] }), /model\.gradCheckpointing/);
});
