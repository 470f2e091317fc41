// ControlNet training on the shared trainer: a tiny DiT-ControlNet learns a condition (its loss with
// the true condition falls below its loss with another image's condition) while the base stays bit
// for bit; Diff-Tuning replays the bank with extracted conditions; the convergence detector; the
// `difftune controlnet` command end to end with resume.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { createDiffusion } from '../src/diffusion/create';
import { ConditionKind, extractCondition } from '../src/data/conditions';
import { DiTControlNet, loadDiTControlNet } from '../src/models/dit-controlnet';
import { readJsonl } from '../src/report/jsonl';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { resolveControlNetConfig } from '../src/tuning/controlnet-config';
import { trainControlNet } from '../src/tuning/controlnet-run';
import { convergencePlot, convergenceThreshold, firstStepUnder } from '../src/tuning/convergence';
import { difftune } from './helpers/difftune-cli';
import { tempDir, trainFixture } from './helpers/train-fixture';

/** Denoising MSE of the model on fixed images with the given conditions, timesteps spread over the chain, fixed noise. */
function probeLoss(model: DiTControlNet, images: Tensor, cond: Tensor, nullLabel: number): number {
  const diffusion = createDiffusion({ timestepRespacing: '' });
  const g = new torch.Generator('cpu', 99);
  return torch.noGrad(() => torch.scope(() => {
    const n = images.shape[0];
    const reps = 4;
    const x = images.repeat([reps, 1, 1, 1]);
    const c = cond.repeat([reps, 1, 1, 1]);
    const t = torch.tensor(Array.from({ length: n * reps }, (_, i) => Math.floor(((i + 0.5) / (n * reps)) * 1000)), { dtype: 'int64' });
    const noise = torch.randn(x.shape, { generator: g });
    const y = torch.full([n * reps], nullLabel, { dtype: 'int64' });
    const wasTraining = model.training;
    model.eval();
    const terms = diffusion.trainingLosses((xt, tt, k: { y: Tensor }) => model.forward(xt, tt, k.y, { condition: c }), x, t, { noise, modelKwargs: { y } });
    model.train(wasTraining);
    return terms.mse!.mean().item();
  }));
}

function config(f: { ckpt: string; target: string; bank: string }, out: string, values: Record<string, unknown>, controlnet: Record<string, unknown>) {
  return resolveControlNetConfig({
    values: {
      method: 'full', model: { ckpt: f.ckpt }, data: { target: f.target },
      optim: { lr: 1e-2, batchSize: 10 }, ema: { decay: 0.9 },
      run: { steps: 100, out, logEvery: 10, checkpointEvery: 100, previewEvery: 0 },
      ...values,
      controlnet: { condition: 'grayscale', blocks: 2, ...controlnet },
    },
  });
}

test('the convergence step is the first evaluation under the threshold; the threshold rule', () => {
  const series = [
    { step: 300, distance: 0.2 }, { step: 0, distance: 0.9 }, { step: 100, distance: 0.8 },
    { step: 200, distance: 0.45 }, { step: 400, distance: 0.6 },
  ];
  assert.equal(firstStepUnder(series, 0.5), 200);
  assert.equal(firstStepUnder(series, 0.45), 300, 'strictly under');
  assert.equal(firstStepUnder(series, 0.1), null);
  assert.equal(convergenceThreshold({ matched: 0, shuffled: 0.8 }, 0.5), 0.4);
  assert.equal(convergenceThreshold({ matched: 0.1, shuffled: 0.5 }, 0.25), 0.2);
  assert.throws(() => convergenceThreshold({ matched: 0.3, shuffled: 0.3 }, 0.5), /must be farther apart than matched/);
  assert.throws(() => convergenceThreshold({ matched: 0, shuffled: 1 }, 0), /fraction must be in \(0, 1\]/);
  // The plot marks each curve's convergence point (none for a curve that never crosses).
  assert.match(convergencePlot([{ label: 'run', series }], 0.5, 'canny'), /convergence step/);
  assert.doesNotMatch(convergencePlot([{ label: 'run', series }], 0.1, 'canny'), /convergence step/);
});

test('a tiny DiT-ControlNet learns its condition through the trainer; the base stays frozen; memory flat', async () => {
  const f = await trainFixture();
  const out = tempDir('cn-learn');
  const { train, controlnet } = config(f, out, {}, { evalEvery: 50, evalSamples: 3, evalSteps: 4 });
  const live: number[] = [];
  let baseBefore: Map<string, Tensor> | null = null;
  let probe: { images: Tensor; cond: Tensor; other: Tensor } | null = null;
  let before: { right: number; wrong: number } | null = null;
  const r = await trainControlNet(train, controlnet, {
    log: () => {}, progress: false,
    hooks: {
      beforeStep: (step, tr) => {
        if (step !== 0) return;
        const model = tr.model as DiTControlNet;
        baseBefore = new Map(model.namedParameters().filter(([k]) => !k.startsWith('controlnet.')).map(([k, p]) => [k, p.detach().clone().keep()]));
        // Real target images (not flipped): 4 squares then 4 crosses, their grayscale condition, and
        // the condition of an image of the other class.
        const src = (tr.inputs.target as unknown as { images: { batch(i: number[]): { x: Tensor } } }).images;
        const images = src.batch([0, 5, 10, 15, 16, 21, 26, 31]).x.keep();
        const cond = extractCondition('grayscale', images).keep();
        probe = { images, cond, other: cond.roll([4], [0]).keep() };
        before = { right: probeLoss(model, images, cond, 4), wrong: probeLoss(model, images, probe.other, 4) };
      },
      afterStep: (step) => { if (step === 40 || step === 90) live.push(torch.liveTensorCount()); },
    },
  });
  const model = r.trainer.model as DiTControlNet;
  const p = probe!;
  const after = { right: probeLoss(model, p.images, p.cond, 4), wrong: probeLoss(model, p.images, p.other, 4) };
  assert.equal(before!.right, before!.wrong, 'at initialisation the condition has no effect');
  assert.ok(after.right < 0.9 * before!.right, `loss with the condition falls: ${before!.right.toFixed(4)} -> ${after.right.toFixed(4)}`);
  // (The fixture's base is a random DiT, so the branch has a hard time; measured: 0.43 vs 0.49.)
  assert.ok(after.right < 0.93 * after.wrong, `the model uses the condition: right ${after.right.toFixed(4)} vs another image's ${after.wrong.toFixed(4)}`);
  for (const [k, t] of baseBefore!) assert.ok(model.stateDict().get(k)!.equal(t), `base tensor ${k} unchanged`);
  assert.equal(live[0], live[1], 'live tensors do not grow between steps 40 and 90');
  // The detector measured steps 0, 20, 40, 60 into the log and its summary.
  const conv = readJsonl(path.join(out, 'log.jsonl')).filter((x) => typeof x.convergence_distance === 'number');
  assert.deepEqual(conv.map((x) => x.step), [0, 50, 100]);
  assert.deepEqual(r.convergence!.series.map((x) => x.step), [0, 50, 100]);
  assert.equal(r.convergence!.reference.matched, 0, 'grayscale is deterministic: a real image matches its own condition exactly');
  assert.ok(r.convergence!.reference.shuffled > 0);
  assert.equal(r.convergence!.convergence_step, firstStepUnder(r.convergence!.series, r.convergence!.threshold));
  assert.ok(fs.readFileSync(path.join(out, 'convergence.svg'), 'utf8').includes('threshold'));
  const { model: saved } = loadDiTControlNet(path.join(out, 'model.safetensors'));
  assert.equal(saved.control.condition, 'grayscale');
});

test('diff-tuning replays bank items with their extracted conditions, psi/xi timesteps; zero-condition replay and EMA evaluation too', async () => {
  const f = await trainFixture();
  for (const replayCondition of ['extracted', 'zero'] as const) {
    const out = tempDir('cn-dt');
    const { train, controlnet } = config(f, out, { method: 'diff-tuning', data: { target: f.target, bank: f.bank }, run: { steps: 6, out, logEvery: 3, checkpointEvery: 6, previewEvery: 0 } },
      // The zero-condition run also measures convergence on the EMA weights.
      replayCondition === 'zero' ? { evalEvery: 3, evalSamples: 2, evalSteps: 2, evalWeights: 'ema', replayCondition } : { evalEvery: 0, replayCondition });
    const r = await trainControlNet(train, controlnet, { log: () => {}, progress: false });
    // Replay floor(0.2 * 10) = 2 items; target t ∝ (t+1), replay t ∝ (T-t), lambda 0.1 (the paper's code).
    assert.deepEqual(r.trainer.split, { target: 8, replay: 2 });
    assert.deepEqual(r.trainer.objective.targetLaw.law, { kind: 'noise-end', tau: 1 });
    assert.deepEqual(r.trainer.objective.replayLaw!.law, { kind: 'data-end', tau: 1 });
    assert.equal(r.trainer.objective.retentionWeight, 0.1);
    const bankSource = r.trainer.inputs.bank!;
    const b = bankSource.batch([0, 1]);
    const condPart = b.x.slice(1, 3, 4);
    if (replayCondition === 'zero') assert.equal(torch.scope(() => condPart.abs().max().item()), 0);
    else assert.ok(torch.scope(() => condPart.equal(extractCondition('grayscale' as ConditionKind, b.x.slice(1, 0, 3)))), 'bank condition = extracted from the bank image');
    const log = readJsonl(path.join(out, 'log.jsonl'));
    const losses = log.filter((x) => typeof x.loss === 'number');
    assert.equal(losses.length, 2);
    assert.ok(losses.every((x) => typeof x.loss_replay === 'number'), 'replay loss logged');
    if (replayCondition === 'zero') assert.deepEqual(r.convergence!.series.map((p) => p.step), [0, 3, 6]);
    else assert.equal(r.convergence, null);
  }
  // Diff-tuning without a bank is a clear error.
  assert.throws(() => config(f, tempDir('cn-x'), { method: 'diff-tuning' }, {}), /'data.bank' is required for method "diff-tuning"/);
  assert.throws(() => config(f, tempDir('cn-x'), { method: 'retention-only', data: { target: f.target, bank: f.bank } }, {}), /must be "full" or "diff-tuning" for a ControlNet/);
  assert.throws(() => config(f, tempDir('cn-x'), {}, { condition: 'depth' }), /'controlnet.condition' must be one of/);
});

test('a config file holds trainer fields and a controlnet section; errors name the file and the field', async () => {
  const f = await trainFixture();
  const dir = tempDir('cn-cfg');
  const file = path.join(dir, 'cn.json');
  fs.writeFileSync(file, JSON.stringify({ method: 'diff-tuning', model: { ckpt: f.ckpt }, data: { target: f.target, bank: f.bank }, controlnet: { condition: 'lowres', blocks: 1 } }));
  const r = resolveControlNetConfig({ file, overrides: [['controlnet.evalEvery', '7'], ['optim.lr', '0.01']] });
  assert.deepEqual([r.train.method, r.train.optim.lr, r.controlnet.condition, r.controlnet.blocks, r.controlnet.evalEvery, r.controlnet.thresholdFraction],
    ['diff-tuning', 0.01, 'lowres', 1, 7, 0.5]);
  fs.writeFileSync(file, JSON.stringify({ model: { ckpt: f.ckpt }, data: { target: f.target }, method: 'full', controlnet: { conditon: 'canny' } }));
  assert.throws(() => resolveControlNetConfig({ file }), (e: Error) => e.message.includes(file) && /'controlnet.conditon' is not a known field \(did you mean 'condition'\?\)/.test(e.message));
  fs.writeFileSync(file, JSON.stringify({ model: { ckpt: f.ckpt }, data: { target: f.target }, method: 'full', optim: { lr: -1 } }));
  assert.throws(() => resolveControlNetConfig({ file }), (e: Error) => e.message.startsWith(`${file} (with command-line overrides): 'optim.lr' must be > 0`));
  assert.throws(() => resolveControlNetConfig({ file: path.join(dir, 'none.json') }), /none\.json: not readable JSON/);
});

test('--resume with an unreadable controlnet.json names the file', async () => {
  const out = tempDir('cn-bad-settings');
  const file = path.join(out, 'controlnet.json');
  fs.writeFileSync(file, '{"condition": "gray');
  const { train, controlnet } = config({ ckpt: path.join(out, 'none.safetensors'), target: out, bank: out }, out, {}, {});
  await assert.rejects(trainControlNet(train, controlnet, { resume: true, log: () => undefined }),
    (e: Error) => e.message.startsWith(`${file}: not readable JSON`));
});

test('a diff-tuning ControlNet run stopped and resumed equals the uninterrupted run bit for bit', async () => {
  const f = await trainFixture();
  const run = async (out: string, steps: number, resume: boolean): Promise<Map<string, Tensor>> => {
    const { train, controlnet } = config(f, out, { method: 'diff-tuning', data: { target: f.target, bank: f.bank }, run: { steps, out, logEvery: 2, checkpointEvery: 3, previewEvery: 0 } },
      { evalEvery: 3, evalSamples: 3, evalSteps: 2 });
    const r = await trainControlNet(train, controlnet, { log: () => {}, progress: false, resume });
    const model = r.trainer.model as DiTControlNet;
    const state = new Map([...model.controlStateDict()].map(([k, t]) => [k, t.detach().clone().keep()]));
    for (const [k, t] of r.trainer.ema.shadow) state.set(`ema.${k}`, t.detach().clone().keep());
    return state;
  };
  const whole = await run(tempDir('cn-whole'), 6, false);
  const out = tempDir('cn-parts');
  await run(out, 3, false);
  const parts = await run(out, 6, true);
  for (const [k, t] of whole) assert.ok(parts.get(k)!.equal(t), `${k} equal after resume`);
  // The convergence points of the first part are kept, the later ones measured once.
  const conv = readJsonl(path.join(out, 'log.jsonl')).filter((x) => typeof x.convergence_distance === 'number').map((x) => x.step);
  assert.deepEqual(conv, [0, 3, 6]);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'convergence.json'), 'utf8')).series.map((p: { step: number }) => p.step), [0, 3, 6]);
});

test('difftune controlnet end to end: train, previews, convergence log, --resume, model file', async () => {
  const { ckpt, target: data } = await trainFixture();
  const dir = tempDir('cn-cli');
  const run = path.join(dir, 'run');
  const common = ['--base', ckpt, '--condition', 'canny', '--data', data, '--method', 'full', '--out', run, '--batch', '8', '--lr', '1e-3',
    '--eval-every', '2', '--eval-samples', '3', '--eval-steps', '3', '--log-every', '2', '--checkpoint-every', '4', '--preview-every', '4',
    '--set', 'ema.decay=0.9', '--set', 'controlnet.blocks=1'];
  const first = difftune(['controlnet', ...common, '--steps', '4']);
  assert.match(first.stdout, /controlnet: condition canny, blocks 1/);
  assert.match(first.stdout, /convergence metric: 3 held-out canny conditions/);
  const clash = difftune(['controlnet', ...common, '--steps', '6'], { ok: false });
  assert.match(clash.stderr, /already holds checkpoints: pass --resume/);
  const other = difftune(['controlnet', ...common, '--steps', '6', '--resume', '--set', 'controlnet.blocks=2'], { ok: false });
  assert.match(other.stderr, /other ControlNet settings \(controlnet.blocks: 1 -> 2\)/);
  const second = difftune(['controlnet', ...common, '--steps', '6', '--resume']);
  assert.match(second.stdout, /resumed from .*step-00000004/);
  const log = readJsonl(path.join(run, 'log.jsonl'));
  assert.deepEqual(log.filter((r) => typeof r.convergence_distance === 'number').map((r) => r.step), [0, 2, 4, 6]);
  const summary = JSON.parse(fs.readFileSync(path.join(run, 'convergence.json'), 'utf8'));
  assert.deepEqual(summary.series.map((p: { step: number }) => p.step), [0, 2, 4, 6]);
  for (const f of ['previews/step-00000000.png', 'previews/step-00000004.png', 'convergence.svg', 'model.safetensors', 'model.json', 'controlnet.json', 'config.json']) {
    assert.ok(fs.existsSync(path.join(run, f)), `${f} written`);
  }
  const { model } = loadDiTControlNet(path.join(run, 'model.safetensors'));
  assert.deepEqual(model.control, { numBlocks: 1, conditionChannels: 1, condition: 'canny' });
  const bad = difftune(['controlnet', '--base', ckpt, '--data', data, '--method', 'diff-tuning', '--out', path.join(dir, 'r2')], { ok: false });
  assert.match(bad.stderr, /'data.bank' is required/);
});
