import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { createDiffusion } from '../src/diffusion/create';
import { DiT } from '../src/models/dit';
import * as torch from '../src/torch';
import { configDiff, configHash, resolveConfig } from '../src/tuning/config';
import { buildObjective, combineLosses, splitBatch } from '../src/tuning/objective';
import { estimateMemory } from '../src/tuning/plan';
import { tempDir } from './helpers/train-fixture';

const BASE = { model: { ckpt: 'm.safetensors' }, data: { target: 'imgs', bank: 'bank' } };

test('defaults are the reference code: diff-tuning, AdamW 1e-4 wd 0, batch 32, tau 1, ratio 0.2, lambda 0.1, EMA 0.9999', () => {
  const c = resolveConfig({ values: BASE });
  assert.equal(c.method, 'diff-tuning');
  assert.deepEqual([c.optim.lr, c.optim.weightDecay, c.optim.batchSize, c.optim.gradClip], [null, 0, 32, null]);
  assert.deepEqual([c.objective.tau, c.objective.tauReplay, c.objective.replayRatio, c.objective.retentionWeight], [1, null, 0.2, 0.1]);
  assert.equal(c.ema.decay, 0.9999);
});

test('config errors name the source and the field, and say what was expected', () => {
  const dir = tempDir('cfg');
  const file = path.join(dir, 'run.json');
  fs.writeFileSync(file, JSON.stringify({ ...BASE, optim: { batchSzie: 8 } }));
  assert.throws(() => resolveConfig({ file }), (e: Error) => e.message.includes(file) && e.message.includes("'optim.batchSzie'") && e.message.includes("did you mean 'batchSize'"));
  fs.writeFileSync(file, JSON.stringify({ ...BASE, objective: { tau: -1 } }));
  assert.throws(() => resolveConfig({ file }), /'objective.tau' must be >= 0, got -1/);
  fs.writeFileSync(file, JSON.stringify({ ...BASE, method: 'fancy' }));
  assert.throws(() => resolveConfig({ file }), /'method' must be one of "full", "diff-tuning"/);
  fs.writeFileSync(file, '{ not json');
  assert.throws(() => resolveConfig({ file }), /is not valid JSON/);
  assert.throws(() => resolveConfig({ values: { ...BASE, data: { target: 'imgs' } } }), /'data.bank' is required for method "diff-tuning"/);
  assert.throws(() => resolveConfig({ values: { ...BASE, method: 'full' } }), /'data.bank' is set but method "full" does not use a bank/);
  assert.throws(() => resolveConfig({ values: { ...BASE, optim: { batchSize: 4 } } }), /'objective.replayRatio' gives no replay samples: floor\(4 · 0.2\) = 0/);
  assert.throws(() => resolveConfig({ values: { ...BASE, run: { precision: 'fp16' } } }), /'run.precision' must be one of "fp32", "bf16", "auto"/);
  for (const precision of ['bf16', 'auto']) assert.equal(resolveConfig({ values: { ...BASE, run: { precision } } }).run.precision, precision, `${precision} on the CPU`);
  assert.throws(() => resolveConfig({ values: BASE, overrides: [['optim.nope', '1']] }), /'optim.nope' is not a known field/);
});

test('command-line overrides win over the file and are typed by the schema', () => {
  const dir = tempDir('cfg');
  const file = path.join(dir, 'run.json');
  fs.writeFileSync(file, JSON.stringify({ ...BASE, optim: { lr: 1e-3 } }));
  const c = resolveConfig({ file, overrides: [['optim.lr', '5e-5'], ['run.steps', '7'], ['peft.method', 'lora'], ['optim.gradClip', 'null']] });
  assert.equal(c.optim.lr, 5e-5);
  assert.equal(c.run.steps, 7);
  assert.equal(c.peft.method, 'lora');
  assert.equal(c.optim.gradClip, null);
  assert.throws(() => resolveConfig({ file, overrides: [['run.steps', 'many']] }), /command line: 'run.steps' must be a number, got 'many'/);
});

test('the config hash covers what a run learns, not how long or where it reports', () => {
  const a = resolveConfig({ values: BASE });
  const longer = resolveConfig({ values: { ...BASE, run: { steps: 99, out: 'elsewhere', logEvery: 3 } } });
  const other = resolveConfig({ values: { ...BASE, objective: { tau: 0.5 } } });
  assert.equal(configHash(a), configHash(longer));
  assert.notEqual(configHash(a), configHash(other));
  assert.deepEqual(configDiff(a, other), ['objective.tau: 1 -> 0.5']);
});

test('batch split: floor(0.2 B) replay samples, 26/6 for 32 and 52/12 for 64; none without a bank', () => {
  const ac = createDiffusion().alphasCumprod;
  const dt = buildObjective(resolveConfig({ values: BASE }), ac);
  assert.deepEqual(splitBatch(dt, 32), { target: 26, replay: 6 });
  assert.deepEqual(splitBatch(dt, 64), { target: 52, replay: 12 });
  assert.deepEqual(splitBatch(dt, 10), { target: 8, replay: 2 });
  const full = buildObjective(resolveConfig({ values: { ...BASE, method: 'full', data: { target: 'imgs' } } }), ac);
  assert.deepEqual(splitBatch(full, 32), { target: 32, replay: 0 });
});

test('methods map to the laws of the paper: psi/xi for diff-tuning, uniform for full, one side for each ablation', () => {
  const ac = createDiffusion().alphasCumprod;
  const law = (values: object) => buildObjective(resolveConfig({ values: { ...BASE, ...values } }), ac);
  const noBank = { data: { target: 'imgs' } };
  const dt = law({});
  assert.equal(dt.targetLaw.mean().toFixed(1), '666.0');
  assert.equal(dt.replayLaw!.mean().toFixed(1), '333.0');
  assert.equal(law({ method: 'full', ...noBank }).targetLaw.mean().toFixed(1), '499.5');
  assert.equal(law({ method: 'full', ...noBank }).replayLaw, null);
  const ret = law({ method: 'retention-only' });
  assert.deepEqual([ret.targetLaw.mean().toFixed(1), ret.replayLaw!.mean().toFixed(1)], ['499.5', '333.0']);
  const rec = law({ method: 'reconsolidation-only', ...noBank });
  assert.deepEqual([rec.targetLaw.mean().toFixed(1), rec.replayLaw], ['666.0', null]);
  assert.equal(law({ objective: { tau: 2, tauReplay: 0 } }).replayLaw!.mean().toFixed(1), '499.5');
  const p2 = law({ method: 'full', ...noBank, objective: { lossWeighting: 'p2' } });
  assert.ok(Math.abs(p2.mseWeights![0] - 0.01) < 1e-4);
});

test('combined loss: w_mse(t)·mse + vb per sample, times T·p(t) in weighting mode, L = mean(target) + lambda·mean(replay)', () => {
  const ac = createDiffusion().alphasCumprod;
  const o = buildObjective(resolveConfig({ values: { ...BASE, objective: { lossWeighting: 'p2', timestepMode: 'weight', retentionWeight: 0.25 } } }), ac);
  const mse = [0.5, 1.0, 2.0, 0.25, 4.0];
  const vb = [0.1, 0.2, 0.3, 0.4, 0.5];
  const t = [0, 100, 999, 10, 500];
  const tw = [1.5, 0.5, 2.0, 1.0, 0.25];
  const T = torch.tensor;
  const r = combineLosses(o, { loss: T(mse.map((m, i) => m + vb[i])), mse: T(mse), vb: T(vb) }, T(t, { dtype: 'int64' }), T(tw), 3);
  // Independent arithmetic: P2 weight 1/sqrt(1 + SNR) = sqrt(1 - abar).
  const per = mse.map((m, i) => (m * Math.sqrt(1 - ac[t[i]]) + vb[i]) * tw[i]);
  const target = (per[0] + per[1] + per[2]) / 3;
  const replay = (per[3] + per[4]) / 2;
  assert.ok(Math.abs(r.targetMean.item() - target) < 1e-5);
  assert.ok(Math.abs(r.replayMean!.item() - replay) < 1e-5);
  assert.ok(Math.abs(r.loss.item() - (target + 0.25 * replay)) < 1e-5);
  assert.deepEqual(r.perSample.toArray().map((v) => +v.toFixed(4)), per.map((v) => +v.toFixed(4)));
});

test('plan: weights, gradients, AdamW moments and EMA are counted exactly; PEFT shrinks the trainable part', () => {
  const model = new DiT({ inputSize: 8, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 2, numHeads: 2, numClasses: 4 });
  const c = resolveConfig({ values: BASE });
  const n = model.parameters().reduce((s, p) => s + p.numel, 0);
  const trainable = model.parameters().filter((p) => p.requiresGrad).reduce((s, p) => s + p.numel, 0);
  const plan = estimateMemory(model, c, 1e12);
  assert.deepEqual([plan.weights, plan.gradients, plan.optimizer, plan.ema], [4 * n, 4 * trainable, 8 * trainable, 4 * trainable]);
  assert.ok(plan.activations > 0 && plan.fits === true);
  assert.equal(estimateMemory(model, c, 1000).fits, false);
  const doubled = estimateMemory(model, resolveConfig({ values: { ...BASE, optim: { batchSize: 64 } } }), 1e12);
  assert.ok(Math.abs(doubled.activations - 2 * plan.activations) < 1e-6);
});
