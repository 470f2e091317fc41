import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadDiT } from '../src/models/dit-io';
import { readJsonl } from '../src/report/jsonl';
import { readEventFile } from '../src/report/tensorboard';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { listCheckpoints, loadTrainingState } from '../src/tuning/checkpoint';
import { TrainConfig } from '../src/tuning/config';
import { prepareInputs } from '../src/tuning/setup';
import { Trainer } from '../src/tuning/trainer';
import { fixtureConfig, tempDir, trainFixture } from './helpers/train-fixture';
import { makeTrainer, stateEqual } from './helpers/trainer';
import { probeLoss } from './helpers/probe-loss';
import { DiT } from '../src/models/dit';
import { saveDiT } from '../src/models/dit-io';

const CHILD = path.join(__dirname, 'helpers', 'train-child.js');

test('every objective and PEFT method trains: the probe loss on target data falls', async () => {
  const f = await trainFixture();
  const cases: [string, Record<string, unknown>][] = [
    ['full', { method: 'full', data: { bank: null } }],
    ['diff-tuning', {}],
    ['retention-only', { method: 'retention-only' }],
    ['reconsolidation-only', { method: 'reconsolidation-only', data: { bank: null } }],
    ['diff-tuning, weighting mode', { objective: { timestepMode: 'weight' } }],
    ['P2', { method: 'full', data: { bank: null }, objective: { lossWeighting: 'p2' } }],
    ['Min-SNR', { method: 'full', data: { bank: null }, objective: { lossWeighting: 'min-snr' } }],
    ['Min-SNR (code form)', { method: 'full', data: { bank: null }, objective: { lossWeighting: 'min-snr-code' } }],
    ['DiffFit + diff-tuning', { peft: { method: 'difffit' }, optim: { lr: 1e-2 } }],
    ['BitFit', { method: 'full', data: { bank: null }, peft: { method: 'bitfit' }, optim: { lr: 1e-2 } }],
    ['LoRA', { peft: { method: 'lora', loraRank: 4 }, optim: { lr: 1e-2 } }],
    ['AdaptFormer', { peft: { method: 'adaptformer', adapterDim: 8, adapterScale: 1 }, optim: { lr: 3e-2 } }],
    ['fresh label table', { labels: { mode: 'fresh' } }],
    ['accumulation + clipping', { optim: { accumulate: 2, gradClip: 1.0 } }],
  ];
  for (const [name, values] of cases) {
    const out = tempDir('obj');
    const c = fixtureConfig(f, out, { ...values, run: { steps: 30, logEvery: 10, checkpointEvery: 30, previewEvery: 0 } });
    const trainer = await makeTrainer(c);
    const data = torch.scope(() => trainer.inputs.target.batch(Array.from({ length: 16 }, (_, i) => i + 4)));
    const before = probeLoss(trainer.model, data.x, data.y);
    await trainer.run();
    const after = probeLoss(trainer.model, data.x, data.y);
    trainer.dispose();
    // PEFT trains a small part of the model, so it falls less in 30 steps.
    const limit = values.peft ? 0.95 : 0.8;
    assert.ok(after < limit * before, `${name}: probe loss ${before.toFixed(4)} -> ${after.toFixed(4)}, expected below ${limit} x`);
    console.log(`# ${name}: probe loss ${before.toFixed(4)} -> ${after.toFixed(4)}`);
    const log = readJsonl(path.join(out, 'log.jsonl'));
    assert.equal(log.length, 3, `${name}: one record per 10 steps`);
    assert.ok(fs.existsSync(path.join(out, 'model.safetensors')), `${name}: exported EMA weights`);
    data.x.dispose();
    data.y.dispose();
  }
});

test('a step splits the batch 26/6 for 32, replays with the null label and draws t from psi and xi', async () => {
  const f = await trainFixture();
  const c = fixtureConfig(f, tempDir('split'), { optim: { batchSize: 32 } });
  const trainer = await makeTrainer(c);
  assert.deepEqual(trainer.split, { target: 26, replay: 6 });
  const seen: { y: number[]; t: number[] }[] = [];
  const forward = trainer.model.forward.bind(trainer.model);
  trainer.model.forward = (x: Tensor, t: Tensor, y: Tensor) => {
    seen.push({ y: y.toArray(), t: t.toArray() });
    return forward(x, t, y);
  };
  for (let i = 0; i < 40; i++) trainer.trainStep();
  trainer.dispose();
  const nullLabel = trainer.model.config.numClasses;
  let targetT = 0; let replayT = 0;
  for (const s of seen) {
    assert.equal(s.y.length, 32);
    // Label dropout may null a target label too, but never gives a replay sample a class.
    assert.ok(s.y.slice(26).every((v) => v === nullLabel), `replay labels ${s.y.slice(26)} are all ${nullLabel}`);
    assert.ok(s.y.slice(0, 26).every((v) => v === nullLabel || v < 2), 'target labels are the target classes 0..1 (or dropped)');
    targetT += s.t.slice(0, 26).reduce((a, b) => a + b, 0);
    replayT += s.t.slice(26).reduce((a, b) => a + b, 0);
  }
  // E[t] = 666 under psi and 333 under xi (tau = 1); 1040 and 240 draws: std of the mean ~ 7 and ~ 15.
  const meanTarget = targetT / (26 * seen.length);
  const meanReplay = replayT / (6 * seen.length);
  assert.ok(Math.abs(meanTarget - 666) < 40, `target mean t ${meanTarget}`);
  assert.ok(Math.abs(meanReplay - 333) < 75, `replay mean t ${meanReplay}`);
});

test('N steps, kill, resume, M steps gives bit-identical weights to N+M uninterrupted steps', async () => {
  const f = await trainFixture();
  const whole = tempDir('whole');
  const cWhole = fixtureConfig(f, whole, { run: { steps: 14, checkpointEvery: 100, logEvery: 7 } });
  const uninterrupted = await makeTrainer(cWhole);
  await uninterrupted.run();
  uninterrupted.dispose();

  const parts = tempDir('parts');
  const cFirst = fixtureConfig(f, parts, { run: { steps: 14, checkpointEvery: 6, logEvery: 7 } });
  // The first part runs in a child process that is SIGKILLed as soon as step 6 is on disk.
  const r = spawnSync(process.execPath, [CHILD, JSON.stringify({ config: cFirst, killAfterCheckpoint: 6 })], { encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', `child: ${r.stderr}`);
  assert.deepEqual(listCheckpoints(path.join(parts, 'checkpoints')).map((x) => x.step), [6]);
  const resumed = await makeTrainer(cFirst, { resume: true });
  assert.equal(resumed.step, 6);
  await resumed.run();
  resumed.dispose();
  assert.equal(resumed.step, 14);
  stateEqual(uninterrupted.model.stateDict(), resumed.model.stateDict(), 'model');
  stateEqual(uninterrupted.ema.shadow, resumed.ema.shadow, 'EMA');
  const a = loadTrainingState(listCheckpoints(path.join(whole, 'checkpoints')).pop()!.file);
  const b = loadTrainingState(listCheckpoints(path.join(parts, 'checkpoints')).pop()!.file);
  assert.deepEqual(a.progress.target, b.progress.target, 'data cursors');
  assert.deepEqual(a.progress.bank, b.progress.bank, 'bank cursors');
  for (const [i, st] of a.optimizer.state) stateEqual(st.tensors, b.optimizer.state.get(i)!.tensors, `optimizer state ${i}`);
  assert.ok(a.rng.get('cpu')!.equal(b.rng.get('cpu')!), 'RNG state');
});

test('a run killed while writing a checkpoint leaves the previous one intact, and resumes from it', async () => {
  const f = await trainFixture();
  const out = tempDir('killwrite');
  const c = fixtureConfig(f, out, { run: { steps: 12, checkpointEvery: 4, keepCheckpoints: 5 } });
  const r = spawnSync(process.execPath, [CHILD, JSON.stringify({ config: c, killDuringWrite: 8 })], { encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', `child: ${r.stderr}`);
  const dir = path.join(out, 'checkpoints');
  const partial = fs.readdirSync(dir).filter((n) => n.includes('.tmp-'));
  assert.equal(partial.length, 1, `one half-written temp file: ${fs.readdirSync(dir)}`);
  assert.ok(fs.statSync(path.join(dir, partial[0])).size < fs.statSync(path.join(dir, 'step-00000004.safetensors')).size);
  assert.deepEqual(listCheckpoints(dir).map((x) => x.step), [4], 'the interrupted checkpoint is not listed');
  const s = loadTrainingState(path.join(dir, 'step-00000004.safetensors'));
  assert.equal(s.step, 4);
  const trainer = await makeTrainer(c, { resume: true });
  assert.equal(trainer.step, 4);
  await trainer.run();
  trainer.dispose();
  assert.deepEqual(listCheckpoints(dir).map((x) => x.step), [4, 8, 12]);
  assert.equal(fs.readdirSync(dir).filter((n) => n.includes('.tmp-')).length, 0, 'the dead writer\'s temp file is cleaned up');
  // Step 8 was logged before the kill and again after the resume from 4: the log keeps it once.
  assert.deepEqual(readJsonl(path.join(out, 'log.jsonl')).map((r) => r.step), [4, 8, 12]);
});

test('the NaN guard skips non-finite steps, counts them, and rolls back to the last checkpoint after K in a row', async () => {
  const f = await trainFixture();
  const out = tempDir('nan');
  const c = fixtureConfig(f, out, { run: { steps: 12, checkpointEvery: 5, logEvery: 1, nanRollback: 3 } });
  torch.manualSeed(0);
  const inputs = await prepareInputs(c, () => {});
  const messages: string[] = [];
  let poisoned = false;
  const trainer = new Trainer(c, inputs, {
    log: (m) => messages.push(m),
    progress: false,
    hooks: {
      beforeStep: (step, t) => {
        if (step === 7 && !poisoned) {
          poisoned = true;
          torch.noGrad(() => t.model.final_layer.linear.weight.fill_(NaN));
        }
      },
    },
  });
  await trainer.run();
  trainer.dispose();
  assert.equal(trainer.step, 12);
  assert.equal(messages.filter((m) => m.includes('update skipped')).length, 3, messages.join('\n'));
  assert.ok(messages.some((m) => m.includes('rolled back to step 5')), messages.join('\n'));
  for (const [k, t] of trainer.model.stateDict()) assert.ok(torch.scope(() => t.isfinite().all().item()), `${k} is finite`);
  const log = readJsonl(path.join(out, 'log.jsonl'));
  const last = log[log.length - 1];
  assert.equal(last.skipped_steps, 3);
  assert.equal(last.rollbacks, 1);
});

test('logs: JSONL and TensorBoard records hold target and replay losses, t-buckets, lr, grad norm, throughput', async () => {
  const f = await trainFixture();
  const out = tempDir('logs');
  const c = fixtureConfig(f, out, { run: { steps: 8, logEvery: 4, checkpointEvery: 8, previewEvery: 4, previewCount: 4, previewSteps: 3 } });
  const trainer = await makeTrainer(c);
  await trainer.run();
  trainer.dispose();
  const log = readJsonl(path.join(out, 'log.jsonl'));
  assert.deepEqual(log.map((r) => r.step), [4, 8]);
  for (const r of log) {
    for (const k of ['loss', 'loss_target', 'loss_replay', 'lr', 'grad_norm', 'images_per_s', 'rss_mb']) assert.equal(typeof r[k], 'number', k);
    assert.equal(r.lr, 2e-3);
    // L = L_target + 0.1 L_replay, averaged over the interval.
    assert.ok(Math.abs((r.loss as number) - ((r.loss_target as number) + 0.1 * (r.loss_replay as number))) < 1e-5);
    assert.ok(Object.keys(r.loss_by_t as object).length > 0);
  }
  const tbDir = path.join(out, 'tensorboard');
  const events = fs.readdirSync(tbDir).flatMap((n) => readEventFile(path.join(tbDir, n)));
  const steps = events.filter((e) => 'train/loss_target' in e.scalars).map((e) => e.step);
  assert.deepEqual(steps, [4, 8]);
  assert.equal(events.filter((e) => 'preview' in e.images).length, 3, 'previews at steps 0, 4, 8');
  for (const s of ['00000000', '00000004', '00000008']) assert.ok(fs.existsSync(path.join(out, 'previews', `step-${s}.png`)));
});

test('the exported model loads as a plain DiT (LoRA merged) and equals the EMA weights', async () => {
  const f = await trainFixture();
  const out = tempDir('export');
  const c = fixtureConfig(f, out, { peft: { method: 'lora', loraRank: 2 }, run: { steps: 6, checkpointEvery: 6 } });
  const trainer = await makeTrainer(c);
  await trainer.run();
  trainer.dispose();
  const { model } = loadDiT(path.join(out, 'model.safetensors'));
  const x = torch.randn([3, 3, 8, 8]);
  const t = torch.tensor([10, 500, 990], { dtype: 'int64' });
  const y = torch.tensor([0, 1, 4], { dtype: 'int64' });
  model.eval();
  const merged = torch.noGrad(() => model.forward(x, t, y));
  const unmerged = trainer.ema.swapInto(trainer.model, () => torch.noGrad(() => trainer.model.forward(x, t, y)));
  const err = torch.scope(() => merged.sub(unmerged).abs().max().item());
  assert.ok(err < 1e-5, `merged vs adapter forward: ${err}`);
  assert.ok(fs.existsSync(path.join(out, 'peft.safetensors')));
});

test('an AdaptFormer run exports a model that loads with its adapters and equals the EMA forward', async () => {
  const f = await trainFixture();
  const out = tempDir('export-af');
  const c = fixtureConfig(f, out, { peft: { method: 'adaptformer', adapterDim: 4, adapterScale: 1 }, optim: { lr: 3e-2 }, run: { steps: 4, checkpointEvery: 4 } });
  const trainer = await makeTrainer(c);
  await trainer.run();
  trainer.dispose();
  const { model } = loadDiT(path.join(out, 'model.safetensors'));
  model.eval();
  const x = torch.randn([2, 3, 8, 8]);
  const t = torch.tensor([10, 700], { dtype: 'int64' });
  const y = torch.tensor([0, 1], { dtype: 'int64' });
  const loaded = torch.noGrad(() => model.forward(x, t, y));
  const ema = trainer.ema.swapInto(trainer.model, () => torch.noGrad(() => trainer.model.forward(x, t, y)));
  assert.ok(torch.scope(() => loaded.equal(ema)));
});

test("data.split 'train' trains on the part of the seeded split that evaluation does not hold out", async () => {
  const f = await trainFixture();
  const all = await prepareInputs(fixtureConfig(f, tempDir('split-all')), () => {});
  const train = await prepareInputs(fixtureConfig(f, tempDir('split-train'), { data: { split: 'train' } }), () => {});
  const { splitIndices } = await import('../src/data/split');
  const expected = splitIndices(all.target.length, { evalFraction: 0.1, seed: 0 }).train;
  assert.equal(train.target.length, expected.length);
  assert.ok(expected.length < all.target.length);
  const a = torch.scope(() => all.target.batch(expected).x.keep());
  const b = torch.scope(() => train.target.batch(expected.map((_, i) => i)).x.keep());
  assert.ok(a.equal(b), 'the kept images are exactly the train split, in order');
});

test('in-loop evaluation logs fid_iconnet of the EMA model every N steps, with fixed noise and a small-n warning', async () => {
  const f = await trainFixture();
  const out = tempDir('evalloop');
  const c = fixtureConfig(f, out, { eval: { every: 4, samples: 6, batch: 4, steps: 3 }, run: { steps: 8, checkpointEvery: 8, logEvery: 4 } });
  torch.manualSeed(0);
  const messages: string[] = [];
  const inputs = await prepareInputs(c, (m) => messages.push(m));
  const trainer = new Trainer(c, inputs, { log: (m) => messages.push(m), progress: false });
  await trainer.run();
  const again = [trainer.evaluate()!.fid, trainer.evaluate()!.fid];
  trainer.dispose();
  const records = readJsonl(path.join(out, 'log.jsonl')).filter((r) => 'fid_iconnet' in r);
  // Two during the run, and the two explicit evaluate() calls after it.
  assert.deepEqual(records.map((r) => r.step), [4, 8, 8, 8]);
  for (const r of records) assert.ok(Number.isFinite(r.fid_iconnet) && (r.fid_iconnet as number) > 0);
  assert.equal(again[0], again[1], 'the same weights and fixed noise give the same FID');
  assert.equal(again[0], records[1].fid_iconnet, 'and the logged value at the last step');
  assert.ok(messages.some((m) => m.includes('biased upward')), messages.join('\n'));
});

test('a training loop does not grow the number of live tensors', async () => {
  const f = await trainFixture();
  const c = fixtureConfig(f, tempDir('mem'), {});
  const trainer = await makeTrainer(c);
  for (let i = 0; i < 5; i++) trainer.trainStep();
  const live = torch.liveTensorCount();
  for (let i = 0; i < 30; i++) trainer.trainStep();
  assert.equal(torch.liveTensorCount(), live);
  trainer.dispose();
});

test('a replaying method on a model without a null label row is refused, naming the model and the field', async () => {
  const f = await trainFixture();
  const dir = tempDir('no-null');
  const ckpt = path.join(dir, 'no-null.safetensors');
  saveDiT(ckpt, new DiT({ inputSize: 8, patchSize: 2, inChannels: 3, hiddenSize: 32, depth: 1, numHeads: 2, numClasses: 4, classDropoutProb: 0 }));
  const c = fixtureConfig(f, path.join(dir, 'run'), { model: { ckpt } });
  await assert.rejects(prepareInputs(c, () => {}), (e: Error) => /null label/.test(e.message) && e.message.includes(ckpt) && /class_dropout_prob 0/.test(e.message));
  // full fine-tuning needs no null row
  const inputs = await prepareInputs(fixtureConfig(f, path.join(dir, 'full'), { method: 'full', model: { ckpt }, data: { bank: null } }), () => {});
  assert.equal(inputs.bank, null);
});
