// Learning-rate schedules: constant stays the default (and the same run hash as before the option
// existed); linear and cosine decay to zero at run.steps after a linear warm-up; the trainer
// applies and logs the scheduled rate at every step.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { test } from 'node:test';
import { readJsonl } from '../src/report/jsonl';
import { identityFields, resolveConfig } from '../src/tuning/config';
import { scheduledLr } from '../src/tuning/lr-schedule';
import { fixtureConfig, tempDir, trainFixture } from './helpers/train-fixture';
import { makeTrainer } from './helpers/trainer';

test('scheduledLr: warm-up, then constant, linear or cosine decay to 0 at the last step', () => {
  assert.deepEqual([0, 1, 2, 3].map((s) => scheduledLr(1, 'constant', s, 10, 0)), [1, 1, 1, 1]);
  assert.deepEqual([0, 1, 2, 3, 9].map((s) => scheduledLr(1, 'constant', s, 10, 4)), [0.25, 0.5, 0.75, 1, 1]);
  // 4 warm-up steps, then 6 decaying ones: progress 0, 1/6, ..., 5/6.
  const lin = [4, 7, 9].map((s) => scheduledLr(2, 'linear', s, 10, 4));
  [2, 1, 2 / 6].forEach((v, i) => assert.ok(Math.abs(lin[i] - v) < 1e-12, `linear ${lin[i]} vs ${v}`));
  const cos = [4, 7, 9].map((s) => scheduledLr(2, 'cosine', s, 10, 4));
  assert.equal(cos[0], 2);
  assert.ok(Math.abs(cos[1] - 1) < 1e-12);
  assert.ok(Math.abs(cos[2] - (1 + Math.cos((Math.PI * 5) / 6))) < 1e-12);
});

test('the default schedule leaves the run identity as it was; another one is part of it', () => {
  const base = { model: { ckpt: 'x.safetensors' }, data: { target: 'd' }, method: 'full' };
  const paths = (v: Record<string, unknown>) => identityFields(resolveConfig({ values: v })).map(([k]) => k);
  assert.ok(!paths(base).some((k) => k.startsWith('optim.schedule') || k.startsWith('optim.warmupSteps')));
  assert.ok(paths({ ...base, optim: { schedule: 'cosine' } }).includes('optim.schedule'));
});

test('the trainer steps with the scheduled rate, and log.jsonl records it', async () => {
  const f = await trainFixture();
  const out = tempDir('lr-schedule');
  const c = fixtureConfig(f, out, { optim: { lr: 1e-3, schedule: 'linear', warmupSteps: 2 }, run: { steps: 6, logEvery: 1, checkpointEvery: 6 } });
  const trainer = await makeTrainer(c);
  await trainer.run();
  trainer.dispose();
  const lrs = readJsonl(path.join(out, 'log.jsonl')).filter((r) => typeof r.lr === 'number').map((r) => r.lr as number);
  const want = [0, 1, 2, 3, 4, 5].map((s) => scheduledLr(1e-3, 'linear', s, 6, 2));
  assert.deepEqual(lrs, want);
  assert.deepEqual(want.map((x) => +x.toFixed(6)), [0.0005, 0.001, 0.001, 0.00075, 0.0005, 0.00025]);
});
