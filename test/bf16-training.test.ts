// bf16 autocast training on the CPU: it tracks the float32 run, keeps float32 master weights,
// gradients, AdamW state and EMA, resumes bit for bit after a kill, keeps the NaN guard, and
// `precision: auto` follows the start-up measurement (forced here both ways).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readJsonl } from '../src/report/jsonl';
import * as torch from '../src/torch';
import { listCheckpoints, loadTrainingState } from '../src/tuning/checkpoint';
import { TrainConfig } from '../src/tuning/config';
import { difftune } from './helpers/difftune-cli';
import { fixtureConfig, tempDir, trainFixture } from './helpers/train-fixture';
import { makeTrainer, stateEqual } from './helpers/trainer';

const CHILD = path.join(__dirname, 'helpers', 'train-child.js');

test('a bf16 autocast run tracks the float32 run over 300 steps (loss within 5% per 50-step window)', async () => {
  const f = await trainFixture();
  const losses: Record<string, number[]> = {};
  for (const precision of ['fp32', 'bf16']) {
    const out = tempDir(`prec-${precision}`);
    const c = fixtureConfig(f, out, { method: 'full', data: { bank: null }, optim: { lr: 1e-3, batchSize: 10 },
      run: { steps: 300, logEvery: 50, checkpointEvery: 300, previewEvery: 0, precision } });
    const trainer = await makeTrainer(c);
    assert.equal(trainer.precision, precision);
    await trainer.run();
    trainer.dispose();
    losses[precision] = readJsonl(path.join(out, 'log.jsonl')).map((r) => r.loss as number);
  }
  console.log(`# loss per 50 steps: fp32 ${losses.fp32.map((l) => l.toFixed(4)).join(' ')}; bf16 ${losses.bf16.map((l) => l.toFixed(4)).join(' ')}`);
  assert.equal(losses.bf16.length, 6);
  assert.ok(losses.fp32[5] < 0.8 * losses.fp32[0], 'the float32 run learns');
  for (let i = 0; i < 6; i++) {
    const rel = Math.abs(losses.bf16[i] - losses.fp32[i]) / losses.fp32[i];
    assert.ok(rel < 0.05, `window ${i}: bf16 ${losses.bf16[i]} vs fp32 ${losses.fp32[i]} (${(100 * rel).toFixed(1)}%)`);
  }
  assert.notDeepEqual(losses.bf16, losses.fp32, 'bf16 really ran in lower precision');
});

test('under bf16 the matmuls run in bfloat16 while weights, gradients, AdamW state and EMA stay float32', async () => {
  const f = await trainFixture();
  const c = fixtureConfig(f, tempDir('prec-dtypes'), { run: { steps: 2, checkpointEvery: 100, previewEvery: 0, precision: 'bf16' } });
  const trainer = await makeTrainer(c);
  const out = torch.scope(() => torch.noGrad(() => torch.inPrecision('bf16', 'cpu', () =>
    trainer.model.forward(torch.zeros([2, 3, 8, 8]), torch.tensor([1, 2], { dtype: 'int64' }), torch.tensor([0, 1], { dtype: 'int64' })).dtype)));
  assert.equal(out, 'bfloat16', 'the model computes in bf16 under the trainer\'s precision');
  let gradDtypes: string[] = [];
  const original = trainer.optimizer.step.bind(trainer.optimizer);
  trainer.optimizer.step = () => {
    gradDtypes = trainer.params.map((p) => p.grad!.dtype);
    original();
  };
  assert.ok(trainer.trainStep().applied);
  assert.ok(gradDtypes.length > 0 && gradDtypes.every((d) => d === 'float32'), `gradient dtypes ${[...new Set(gradDtypes)]}`);
  for (const p of trainer.params) assert.equal(p.dtype, 'float32');
  for (const [k, t] of trainer.ema.shadow) assert.equal(t.dtype, 'float32', `EMA ${k}`);
  for (const st of trainer.optimizer.stateDict().state.values()) for (const [k, t] of st.tensors) if (t.numel > 1) assert.equal(t.dtype, 'float32', `AdamW ${k}`);
  trainer.dispose();
});

test('bf16: N steps, kill, resume, M steps gives bit-identical weights to N+M uninterrupted steps', async () => {
  const f = await trainFixture();
  const run = { steps: 10, checkpointEvery: 4, logEvery: 5, precision: 'bf16' };
  const whole = tempDir('bf16-whole');
  const uninterrupted = await makeTrainer(fixtureConfig(f, whole, { run: { ...run, checkpointEvery: 100 } }));
  await uninterrupted.run();
  uninterrupted.dispose();
  const parts = tempDir('bf16-parts');
  const cFirst = fixtureConfig(f, parts, { run });
  const r = spawnSync(process.execPath, [CHILD, JSON.stringify({ config: cFirst, killAfterCheckpoint: 4 })], { encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', `child: ${r.stderr}`);
  const resumed = await makeTrainer(cFirst, { resume: true });
  assert.equal(resumed.step, 4);
  await resumed.run();
  resumed.dispose();
  stateEqual(uninterrupted.model.stateDict(), resumed.model.stateDict(), 'model');
  stateEqual(uninterrupted.ema.shadow, resumed.ema.shadow, 'EMA');
});

test('bf16: the NaN guard skips non-finite steps and rolls back', async () => {
  const f = await trainFixture();
  const c = fixtureConfig(f, tempDir('bf16-nan'), { run: { steps: 10, checkpointEvery: 4, logEvery: 1, nanRollback: 2, precision: 'bf16' } });
  const messages: string[] = [];
  let poisoned = false;
  const trainer = await makeTrainer(c, {
    log: (m) => messages.push(m),
    hooks: {
      beforeStep: (step, t) => {
        if (step === 5 && !poisoned) {
          poisoned = true;
          torch.noGrad(() => t.model.final_layer.linear.weight.fill_(NaN));
        }
      },
    },
  });
  await trainer.run();
  trainer.dispose();
  assert.equal(messages.filter((m) => m.includes('update skipped')).length, 2, messages.join('\n'));
  assert.ok(messages.some((m) => m.includes('rolled back to step 4')), messages.join('\n'));
  for (const [k, t] of trainer.model.stateDict()) assert.ok(torch.scope(() => t.isfinite().all().item()), `${k} is finite`);
});

test('precision auto: float32 where the probe finds bf16 slower (no bf16 instructions), bf16 where faster; a resume keeps the first choice', async () => {
  assert.deepEqual(torch.resolvePrecision('auto', 'cpu', () => ({ fp32: 100, bf16: 60 })).precision, 'fp32');
  assert.deepEqual(torch.resolvePrecision('auto', 'cpu', () => ({ fp32: 100, bf16: 140 })).precision, 'fp32', 'below 1.5x stays float32');
  assert.deepEqual(torch.resolvePrecision('auto', 'cpu', () => ({ fp32: 100, bf16: 380 })).precision, 'bf16');
  assert.deepEqual(torch.resolvePrecision('auto', 'cuda', () => { throw new Error('no probe on CUDA'); }).precision, 'bf16');
  assert.deepEqual(torch.resolvePrecision('fp32', 'cpu', () => { throw new Error('no probe when set'); }).precision, 'fp32');

  const f = await trainFixture();
  const out = tempDir('auto');
  const c = fixtureConfig(f, out, { run: { steps: 4, checkpointEvery: 2, previewEvery: 0, precision: 'auto' } });
  const messages: string[] = [];
  const slow = await makeTrainer(c, { precisionProbe: () => ({ fp32: 100, bf16: 50 }), log: (m) => messages.push(m) });
  assert.equal(slow.precision, 'fp32');
  assert.match(messages.join('\n'), /precision: fp32 \(auto: bf16 matmuls 50 vs float32 100 GFLOP\/s \(0\.50x\), below 1\.5x\)/);
  slow.advance();
  slow.advance(); // checkpointEvery 2: step 2 is on disk
  slow.dispose();
  const resumed = await makeTrainer({ ...c, run: { ...c.run, steps: 6 } } as TrainConfig, { precisionProbe: () => ({ fp32: 100, bf16: 400 }), resume: true });
  assert.equal(resumed.precision, 'fp32', 'the checkpoint\'s precision wins over a new measurement');
  resumed.dispose();
  const fresh = await makeTrainer(fixtureConfig(f, tempDir('auto2'), { run: { precision: 'auto' } }), { precisionProbe: () => ({ fp32: 100, bf16: 400 }) });
  assert.equal(fresh.precision, 'bf16');
  fresh.dispose();
  assert.equal(loadTrainingState(listCheckpoints(path.join(out, 'checkpoints')).pop()!.file).progress.precision, 'fp32');
});

test('pretrain, finetune and controlnet accept --precision bf16 on the CPU and record it', async () => {
  const f = await trainFixture();
  const dir = tempDir('bf16-cli');
  const finetune = difftune(['finetune', '--ckpt', f.ckpt, '--data', f.target, '--method', 'full', '--out', path.join(dir, 'ft'),
    '--steps', '2', '--batch', '8', '--preview-every', '0', '--precision', 'bf16']);
  assert.match(finetune.stdout, /^  2 steps, batch 8, .*, bf16 on cpu$/m, 'the start-of-run summary');
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'ft', 'config.json'), 'utf8')).run.precision, 'bf16');
  const pretrain = difftune(['pretrain', '--model', 'DiT-S/2', '--set', 'model.hiddenSize=32', '--set', 'model.depth=1', '--set', 'model.numHeads=2',
    '--set', 'data.resolution=8', '--data', f.target, '--out', path.join(dir, 'pt'), '--steps', '2', '--batch', '8', '--preview-every', '0', '--precision', 'auto']);
  assert.match(pretrain.stdout, /precision: (bf16|fp32) \(auto: bf16 matmuls \d+ vs float32 \d+ GFLOP\/s/);
  difftune(['controlnet', '--base', f.ckpt, '--condition', 'canny', '--data', f.target, '--out', path.join(dir, 'cn'), '--batch', '8',
    '--steps', '2', '--eval-every', '2', '--eval-samples', '2', '--eval-steps', '2', '--preview-every', '0', '--set', 'controlnet.blocks=1',
    '--precision', 'bf16']);
  const saved = loadTrainingState(listCheckpoints(path.join(dir, 'cn', 'checkpoints')).pop()!.file);
  assert.equal(saved.progress.precision, 'bf16');
});
