// EWC as a forgetting measure: the diagonal Fisher equals the mean of squared per-sample gradients
// taken another way (autograd.grad, float64), the distance sums F·(θ−θ0)² by name with its breakdown,
// and `difftune ewc` wires the bank, labels and models so that its numbers equal those pieces.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { RunJob } from '../bench/transfer/job';
import { ewcOfRun } from '../bench/transfer/one-run';
import { runEwc } from '../src/cli/ewc';
import { mulberry32 } from '../src/data/prng';
import { createDiffusion } from '../src/diffusion/create';
import { diagonalFisher, DiagonalFisher, ewcDistance, moduleOf } from '../src/eval/ewc';
import { DiT } from '../src/models/dit';
import { loadDiT, saveDiT } from '../src/models/dit-io';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { openBank } from '../src/tuning/setup';
import { SIZE, tempDir, trainFixture, writePretrained } from './helpers/train-fixture';

test('diagonalFisher: the mean of squared per-sample gradients, by autograd.grad in float64', () => {
  const dir = tempDir('ewc-fisher');
  try {
    const model = writePretrained(path.join(dir, 'm.safetensors'), 3).to({ dtype: 'float64' });
    const diffusion = createDiffusion({ timestepRespacing: '' });
    torch.manualSeed(11);
    const inputs = torch.randn([3, 3, SIZE, SIZE], { dtype: 'float64' });
    const labels = [4, 0, 4];
    const draws = 2;
    const fisher = diagonalFisher(model, { inputs, labels, diffusion, draws, seed: 7 });
    assert.equal(fisher.samples, 6);
    assert.equal(model.training, true, 'mode restored');
    assert.ok(model.parameters().every((p) => p.grad === null), 'gradients cleared');

    // The same draws (t from mulberry32(seed), noise from a CPU generator with the seed), gradients by autograd.grad.
    const params = model.namedParameters().filter(([, p]) => p.requiresGrad);
    const expected = params.map(([, p]) => new Float64Array(p.numel));
    const rand = mulberry32(7);
    const gen = new torch.Generator('cpu', 7);
    model.eval();
    for (let d = 0; d < draws; d++) {
      for (let i = 0; i < 3; i++) {
        torch.scope(() => {
          const x = inputs.narrow(0, i, 1);
          const t = torch.tensor([Math.floor(rand() * 1000)], { dtype: 'int64' });
          const noise = torch.randn(x.shape, { generator: gen }).to({ dtype: 'float64' });
          const loss = diffusion.trainingLosses((xx, tt, k: { y: Tensor }) => model.forward(xx, tt, k.y), x, t,
            { noise, modelKwargs: { y: torch.tensor([labels[i]], { dtype: 'int64' }) } }).loss.sum();
          const grads = torch.grad([loss], params.map(([, p]) => p), undefined, { allowUnused: true });
          grads.forEach((g, k) => {
            if (!g) return;
            const v = g.toArray();
            for (let j = 0; j < v.length; j++) expected[k][j] += (v[j] * v[j]) / 6;
          });
        });
      }
    }
    model.train();
    let worst = 0;
    let nonZero = 0;
    params.forEach(([name], k) => {
      const got = fisher.values.get(name)!.toArray();
      for (let j = 0; j < got.length; j++) {
        worst = Math.max(worst, Math.abs(got[j] - expected[k][j]) / (Math.abs(expected[k][j]) + 1e-300));
        if (got[j] > 0) nonZero++;
      }
    });
    assert.ok(worst < 1e-10, `relative error ${worst}`);
    assert.ok(nonZero > 0.5 * model.numParameters(true), `${nonZero} non-zero entries`);
    assert.throws(() => diagonalFisher(model, { inputs, labels: [0], diffusion, seed: 0 }), /3 inputs but 1 labels/);
    for (const v of fisher.values.values()) v.dispose();
    diffusion.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('ewcDistance: sum of F·(θ−θ0)² by name, moved weights, per-module breakdown, what is not counted', () => {
  const t = (v: number[]) => torch.tensor(v);
  const fisher: DiagonalFisher = {
    values: new Map([['blocks.0.attn.qkv.weight', t([1, 2])], ['x_embedder.proj.weight', t([3])], ['final_layer.linear.bias', t([5, 5])]]),
    samples: 1,
  };
  const pretrained = new Map([['blocks.0.attn.qkv.weight', t([0, 0])], ['x_embedder.proj.weight', t([1])], ['final_layer.linear.bias', t([0, 0])]]);
  const finetuned = new Map([
    ['blocks.0.attn.qkv.weight', t([1, 0])], ['x_embedder.proj.weight', t([3])], ['final_layer.linear.bias', t([0, 0, 0])],
    ['blocks.0.adapter.down.weight', t([9])],
  ]);
  const r = ewcDistance(fisher, pretrained, finetuned);
  assert.equal(r.total, 1 * 1 + 3 * 4);
  assert.equal(r.elements, 3);
  assert.equal(r.changed, 2);
  assert.equal(r.meanOverChanged, 13 / 2);
  assert.deepEqual(r.byModule, { 'blocks.0': 1, x_embedder: 12 });
  assert.deepEqual(r.notInFisher, ['blocks.0.adapter.down.weight']);
  assert.deepEqual(r.notInFinetuned, ['final_layer.linear.bias']);
  assert.equal(ewcDistance(fisher, pretrained, pretrained).total, 0);
  assert.equal(moduleOf('blocks.12.mlp.fc1.weight'), 'blocks.12');
  assert.equal(moduleOf('t_embedder.mlp.0.bias'), 't_embedder');
});

/** A copy of the model's weights with `name` shifted by `delta`, saved as a model file. */
function shifted(model: DiT, name: string, delta: number, file: string): void {
  const copy = new DiT(model.config, { initialize: false });
  copy.loadStateDict(new Map(model.namedParameters()), { strict: false });
  torch.noGrad(() => copy.namedParameters().find(([n]) => n === name)![1].add_(delta));
  saveDiT(file, copy);
}

test('difftune ewc: one Fisher on the bank for several models; DiffFit gammas measured at 1; errors name the input', async () => {
  const f = await trainFixture();
  const dir = tempDir('ewc-cli');
  try {
    const pretrained = loadDiT(f.ckpt).model;
    const head = path.join(dir, 'head.safetensors');
    const block = path.join(dir, 'block.safetensors');
    shifted(pretrained, 'final_layer.linear.weight', 0.01, head);
    shifted(pretrained, 'blocks.0.attn.qkv.weight', 0.01, block);
    // A DiffFit model: the pretrained weights with gammas, block 0's moved off 1.
    const difffit = new DiT({ ...pretrained.config, useGamma: true, gammaDepth: 1 }, { initialize: false });
    difffit.loadStateDict(new Map(pretrained.namedParameters()), { strict: false });
    torch.noGrad(() => difffit.blocks.at(0).attn.gamma1!.mul_(1.1));
    const gammas = path.join(dir, 'difffit.safetensors');
    saveDiT(gammas, difffit);

    const out = path.join(dir, 'ewc.json');
    const lines: string[] = [];
    const report = (await runEwc(['--pretrained', f.ckpt, '--finetuned', [head, block, f.ckpt].join(','), '--bank', f.bank, '--n', '6', '--draws', '2', '--seed', '3', '--out', out], (m) => lines.push(m)))!;
    assert.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')), JSON.parse(JSON.stringify(report)));
    assert.equal(report.fisher.samples, 12);
    const [rHead, rBlock, rSelf] = report.models;

    // The same Fisher built from the pieces: first 6 bank items, null label, the pretrained weights.
    const bank = await openBank(f.bank, { resolution: SIZE });
    const { x, y } = bank.source.batch([0, 1, 2, 3, 4, 5]);
    const fisher = diagonalFisher(pretrained, { inputs: x, labels: new Array(6).fill(pretrained.config.numClasses), diffusion: createDiffusion({ timestepRespacing: '' }), draws: 2, seed: 3 });
    const theta0 = new Map(pretrained.namedParameters());
    const expectHead = ewcDistance(fisher, theta0, new Map(loadDiT(head).model.namedParameters()));
    assert.ok(Math.abs(rHead.total - expectHead.total) <= 1e-9 * expectHead.total, `${rHead.total} vs ${expectHead.total}`);
    assert.ok(rHead.total > 0);
    assert.deepEqual(Object.keys(rHead.byModule).filter((k) => rHead.byModule[k] > 0), ['final_layer']);
    assert.equal(rHead.changed, pretrained.final_layer.linear.weight.numel);
    assert.deepEqual(Object.keys(rBlock.byModule).filter((k) => rBlock.byModule[k] > 0), ['blocks.0']);
    assert.equal(rSelf.total, 0);
    // bench:transfer measures each run the same way (its EMA weights as the fine-tuned state).
    const job = { id: 'head', source: f.ckpt, sourceConfig: null, device: 'cpu', ewc: { bankDir: f.bank, items: 6, draws: 2, seed: 3 } } as unknown as RunJob;
    const headModel = loadDiT(head).model;
    const benchEwc = await ewcOfRun(job, headModel, new Map(headModel.namedParameters()), () => {});
    assert.deepEqual(benchEwc, { items: 6, draws: 2, total: rHead.total, changed: rHead.changed, meanOverChanged: rHead.meanOverChanged });
    assert.equal(rSelf.changed, 0);
    assert.ok(lines.some((l) => /EWC .*weights moved/.test(l)));
    x.dispose(); y.dispose(); bank.source.dispose();
    for (const v of fisher.values.values()) v.dispose();

    // DiffFit: the Fisher is taken with gammas at 1, so the moved gamma is counted, not skipped.
    const rGamma = (await runEwc(['--pretrained', f.ckpt, '--finetuned', gammas, '--bank', f.bank, '--n', '4', '--out', out], () => {}))!.models[0];
    assert.deepEqual(rGamma.notInFisher, []);
    assert.equal(rGamma.changed, difffit.blocks.at(0).attn.gamma1!.numel);
    assert.ok(rGamma.byModule['blocks.0'] > 0);

    await assert.rejects(runEwc(['--pretrained', f.ckpt, '--finetuned', head, '--bank', f.bank, '--labels', 'class', '--out', out], () => {}), /--labels must be 'null' or 'bank'/);
    const other = path.join(dir, 'other.safetensors');
    writePretrained(other, 9);
    await assert.rejects(runEwc(['--pretrained', other, '--finetuned', head, '--bank', f.bank, '--out', out], () => {}), /bank was sampled from another model/);
    const deeper = new DiT({ ...pretrained.config, depth: 3 });
    const deeperFile = path.join(dir, 'deeper.safetensors');
    saveDiT(deeperFile, deeper);
    await assert.rejects(runEwc(['--pretrained', f.ckpt, '--finetuned', deeperFile, '--bank', f.bank, '--out', out], () => {}), /deeper\.safetensors: depth 3, but the pretrained model has 2/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
