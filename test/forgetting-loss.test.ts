// The chain of forgetting by loss (`difftune forgetting --metric loss`): the probe's per-bucket
// MSEs against MSEs computed by hand from the same generator draws, the paired ratio and its
// standard error against closed forms, and the CLI's report files.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { createDiffusion } from '../src/diffusion/create';
import { pairedRatio, runLossProbe, timestepBuckets } from '../src/eval/forgetting-loss';
import { runForgetting } from '../src/cli/forgetting';
import { saveDiT } from '../src/models/dit-io';
import { encodePng } from '../src/report/png';
import { asDenoiser, tinyDiT } from './helpers/tiny-dit';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-forgetting-loss-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const pretrained = tinyDiT(5, 1);
const finetuned = tinyDiT(3, 2);

function randomImages(n: number, seed: number): Tensor {
  const g = new torch.Generator('cpu', seed);
  return torch.randint(0, 256, [n, 3, 8, 8], { generator: g }).to({ dtype: 'uint8' });
}

test('timestepBuckets: equal widths covering 0..T-1; bad counts are named', () => {
  assert.deepEqual(timestepBuckets(1000, 4), [[0, 249], [250, 499], [500, 749], [750, 999]]);
  assert.deepEqual(timestepBuckets(10, 3), [[0, 2], [3, 5], [6, 9]]);
  assert.throws(() => timestepBuckets(10, 0), /buckets: expected an integer in 1..10, got 0/);
  assert.throws(() => timestepBuckets(10, 11), /buckets/);
});

test('pairedRatio: the ratio of means; zero error for proportional pairs, the delta method otherwise', () => {
  const b = [1, 2, 3, 4];
  const exact = pairedRatio(b.map((v) => 2 * v), b);
  assert.equal(exact.value, 2);
  assert.ok(exact.se < 1e-12);
  // a = [1, 3], b = [1, 1]: ratio 2; var(a) = 2, var(b) = 0, cov = 0 -> se^2 = 2 / (1 * 2).
  const r = pairedRatio([1, 3], [1, 1]);
  assert.equal(r.value, 2);
  assert.ok(Math.abs(r.se - 1) < 1e-12);
  assert.throws(() => pairedRatio([1], [1]), /at least 2/);
});

test('runLossProbe: per-bucket MSEs equal hand-computed ones from the same draws; identical models give ratio 1', () => {
  const images = randomImages(5, 3);
  const labels = [0, 1, 2, 0, 1];
  const diffusion = createDiffusion({ diffusionSteps: 20, learnSigma: true });
  try {
    const result = runLossProbe({
      pretrained: asDenoiser(pretrained), finetuned: [{ name: 'ft', model: asDenoiser(finetuned) }, { name: 'same', model: asDenoiser(pretrained) }],
      images, labels, diffusion, buckets: 2, draws: 2, seed: 7, batchSize: 3,
    });
    assert.equal(result.numTimesteps, 20);
    assert.deepEqual(result.buckets.map((b) => [b.tLow, b.tHigh]), [[0, 9], [10, 19]]);

    // By hand: batches of 3 and 2, per batch the buckets in order, per bucket the draws: t then noise.
    const g = new torch.Generator('cpu', 7);
    const sums: Record<string, number[]> = { pretrained: [0, 0], ft: [0, 0], sameTarget: [0, 0] };
    torch.noGrad(() => {
      for (const [start, rows] of [[0, 3], [3, 2]]) {
        const x0 = images.narrow(0, start, rows).to({ dtype: 'float32' }).div(127.5).sub(1);
        const y = torch.tensor(labels.slice(start, start + rows), { dtype: 'int64' });
        const nullY = torch.full([rows], 5, { dtype: 'int64' });
        [[0, 9], [10, 19]].forEach(([lo, hi], b) => {
          for (let d = 0; d < 2; d++) {
            const t = torch.randint(lo, hi + 1, [rows], { generator: g });
            const noise = torch.randn([rows, 3, 8, 8], { generator: g });
            const alphaBar = diffusion.alphasCumprod;
            const ts = t.toArray() as number[];
            const a = torch.tensor(ts.map((k) => Math.sqrt(alphaBar[k])), { dtype: 'float32' }).reshape([rows, 1, 1, 1]);
            const s = torch.tensor(ts.map((k) => Math.sqrt(1 - alphaBar[k])), { dtype: 'float32' }).reshape([rows, 1, 1, 1]);
            const xt = x0.mul(a).add(noise.mul(s));
            const mse = (out: Tensor) => (out.narrow(1, 0, 3).sub(noise).square().mean([1, 2, 3]).toArray() as number[]).reduce((p, v) => p + v, 0);
            sums.pretrained[b] += mse(pretrained.forward(xt, t, nullY));
            sums.ft[b] += mse(finetuned.forward(xt, t, y));
            sums.sameTarget[b] += mse(pretrained.forward(xt, t, y));
          }
        });
      }
    });
    for (let b = 0; b < 2; b++) {
      const bucket = result.buckets[b];
      assert.ok(Math.abs(bucket.mse.pretrained.mean - sums.pretrained[b] / 10) < 1e-5, `bucket ${b} pretrained`);
      assert.ok(Math.abs(bucket.mse.ft.mean - sums.ft[b] / 10) < 1e-5, `bucket ${b} ft`);
      assert.ok(Math.abs(bucket.mse.same.mean - sums.sameTarget[b] / 10) < 1e-5, `bucket ${b} same model, target labels`);
      assert.ok(Math.abs(bucket.ratio.ft.value - sums.pretrained[b] / sums.ft[b]) < 1e-5);
      assert.ok(bucket.ratio.ft.low < bucket.ratio.ft.value && bucket.ratio.ft.value < bucket.ratio.ft.high);
    }

    // With the pretrained model's label the same as the fine-tuned one's, a model against itself is exactly 1x.
    const self = runLossProbe({
      pretrained: asDenoiser(pretrained), finetuned: [{ name: 'self', model: asDenoiser(pretrained) }],
      images, labels, diffusion, buckets: 2, pretrainedLabels: 'same', seed: 7,
    });
    for (const b of self.buckets) {
      assert.equal(b.ratio.self.value, 1);
      assert.equal(b.ratio.self.se, 0);
    }
    assert.throws(() => runLossProbe({ pretrained: asDenoiser(pretrained), finetuned: [{ name: 'pretrained', model: asDenoiser(finetuned) }], images, labels, diffusion, seed: 0 }),
      /names must be distinct and not 'pretrained'/);
    assert.throws(() => runLossProbe({ pretrained: asDenoiser(pretrained), finetuned: [{ name: 'ft', model: asDenoiser(finetuned) }], images, labels: [0], diffusion, seed: 0 }),
      /1 labels for 5 images/);
  } finally {
    diffusion.dispose();
  }
});

test('difftune forgetting --metric loss: two named fine-tuned models, loss-curve.json + SVG + PNG', async () => {
  const models = path.join(tmp, 'models');
  fs.mkdirSync(path.join(models, 'run-a'), { recursive: true });
  saveDiT(path.join(models, 'pretrained.safetensors'), pretrained);
  saveDiT(path.join(models, 'run-a', 'model.safetensors'), finetuned);
  saveDiT(path.join(models, 'other.safetensors'), tinyDiT(3, 4));
  const data = path.join(tmp, 'data');
  const pixels = randomImages(6, 5).permute(0, 2, 3, 1).contiguous().bytes();
  ['apple', 'banana', 'cherry'].forEach((cls, c) => {
    fs.mkdirSync(path.join(data, cls), { recursive: true });
    for (let i = 0; i < 2; i++) {
      const k = c * 2 + i;
      fs.writeFileSync(path.join(data, cls, `${i}.png`), encodePng(pixels.subarray(k * 192, (k + 1) * 192), 8, 8, 3));
    }
  });
  const out = path.join(tmp, 'loss-out');
  const logs: string[] = [];
  await runForgetting(['--metric', 'loss', '--pretrained', path.join(models, 'pretrained.safetensors'),
    '--finetuned', `${path.join(models, 'run-a', 'model.safetensors')},b=${path.join(models, 'other.safetensors')}`,
    '--dataset', data, '--n', '4', '--buckets', '5', '--batch', '3', '--out', out], { log: (m) => logs.push(m) });
  const json = JSON.parse(fs.readFileSync(path.join(out, 'loss-curve.json'), 'utf8'));
  assert.equal(json.metric, 'eps_mse');
  assert.equal(json.images, 4);
  assert.equal(json.numTimesteps, 1000);
  assert.deepEqual(json.buckets.map((b: { tLow: number }) => b.tLow), [0, 200, 400, 600, 800]);
  assert.deepEqual(Object.keys(json.buckets[0].ratio), ['run-a', 'b']);
  assert.deepEqual(Object.keys(json.finetuned), ['run-a', 'b']);
  for (const b of json.buckets) for (const r of Object.values(b.ratio) as { value: number }[]) assert.ok(Number.isFinite(r.value) && r.value > 0);
  assert.ok(fs.readFileSync(path.join(out, 'loss-forgetting.svg'), 'utf8').startsWith('<svg'));
  assert.ok(fs.statSync(path.join(out, 'loss-forgetting.png')).size > 1000);
  assert.ok(logs.some((l) => /^ {2}t 0-199: run-a /.test(l)), logs.join('\n'));
  await assert.rejects(runForgetting(['--metric', 'sharpness', '--pretrained', 'x', '--finetuned', 'y', '--dataset', data]), /--metric/);
  await assert.rejects(runForgetting(['--metric', 'loss', '--pretrained', path.join(models, 'pretrained.safetensors'),
    '--finetuned', path.join(models, 'other.safetensors'), '--dataset', data, '--buckets', '0', '--out', out], { log: () => undefined }), /buckets/);
});
