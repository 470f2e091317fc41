// The chain-of-forgetting probe: the hybrid sampler against loops composed from the diffusion's
// own loops and single-step API (same generator, same noise), the label/CFG policies against
// hand-computed model calls, the probe's FIDs against FIDs computed by hand from plain sampling
// loops, and the report files (curve.json, SVG, PNG, grids) of the library and the CLI.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { cfgBatch, conditionalHalf } from '../src/diffusion/cfg';
import { createDiffusion } from '../src/diffusion/create';
import { hybridSample, LabelPolicy, policyModel, switchIndexFor } from '../src/diffusion/hybrid-sampler';
import { DiffusionModel } from '../src/diffusion/types';
import { SpacedDiffusion } from '../src/diffusion/spaced-diffusion';
import { featureStats, FeatureStats } from '../src/eval/feature-stats';
import { frechetDistance } from '../src/eval/frechet';
import { FeatureExtractor } from '../src/eval/extractor';
import {
  datasetStats, ForgettingResult, proportionalLabels, ProbeExtractor, runForgettingProbe, writeForgettingReport,
} from '../src/eval/forgetting';
import { runForgetting } from '../src/cli/forgetting';
import { DiT } from '../src/models/dit';
import { saveDiT } from '../src/models/dit-io';
import { encodePng } from '../src/report/png';
import { asDenoiser, tinyDiT } from './helpers/tiny-dit';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-forgetting-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PRETRAINED_CLASSES = 5; // null label 5
const FINETUNED_CLASSES = 3; // null label 3

const pretrained = tinyDiT(PRETRAINED_CLASSES, 1);
const finetuned = tinyDiT(FINETUNED_CLASSES, 2);

const N = 3;
const SHAPE = [N, 3, 8, 8];
const labelsOf = (values: number[]): Tensor => torch.tensor(values, { dtype: 'int64' });

/** A diffusion model calling `m` with fixed labels (no policy code involved). */
function withLabels(m: DiT, y: number[], seen?: { name: string; t: number[] }[], name = ''): DiffusionModel<unknown> {
  return (x, t) => {
    seen?.push({ name, t: t.toArray() as number[] });
    return m.forward(x, t, labelsOf(y));
  };
}

/** The diffusion's own loop from a generator: x_T first, then one draw per step. */
function plainLoop(d: SpacedDiffusion, model: DiffusionModel<unknown>, sampler: 'ddpm' | 'ddim', seed: number, eta = 0): Tensor {
  const gen = new torch.Generator('cpu', seed);
  const noise = torch.randn(SHAPE, { generator: gen });
  const noiseFn = (): Tensor => torch.randn(SHAPE, { generator: gen });
  return sampler === 'ddim'
    ? d.ddimSampleLoop(model, SHAPE, { noise, noiseFn, eta })
    : d.pSampleLoop(model, SHAPE, { noise, noiseFn });
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item() as number);
}

test('switchIndexFor: round(fraction * steps), fractions outside [0, 1] refused', () => {
  assert.equal(switchIndexFor(0, 50), 0);
  assert.equal(switchIndexFor(0.1, 50), 5);
  assert.equal(switchIndexFor(0.3, 50), 15); // 0.3 * 50 = 15.000000000000002
  assert.equal(switchIndexFor(1, 50), 50);
  assert.equal(switchIndexFor(0.5, 5), 3);
  assert.throws(() => switchIndexFor(1.2, 50), /\[0, 1\]/);
  assert.throws(() => switchIndexFor(NaN, 50), /\[0, 1\]/);
});

for (const [sampler, eta] of [['ddpm', 0], ['ddim', 0], ['ddim', 0.5]] as const) {
  test(`hybrid sampler (${sampler}, eta ${eta}): switch 0 is the noisy model's own loop, switch S the clean model's, exactly`, () => {
    torch.scope(() => {
      const d = createDiffusion({ timestepRespacing: '6' });
      const A = withLabels(finetuned, [0, 1, 2]);
      const B = withLabels(pretrained, [4, 4, 4]);
      const run = (k: number): Tensor => hybridSample({ diffusion: d, noisy: A, clean: B, switchIndex: k, shape: SHAPE, sampler, eta, generator: new torch.Generator('cpu', 11) });
      const plainA = plainLoop(d, A, sampler, 11, eta);
      const plainB = plainLoop(d, B, sampler, 11, eta);
      assert.ok(maxAbsDiff(plainA, plainB) > 1e-3, 'the two models must sample differently for this test to mean anything');
      assert.ok(run(0).equal(plainA), 'switch 0 != the noisy model alone');
      assert.ok(run(6).equal(plainB), 'switch S != the clean model alone');
      d.dispose();
    });
  });
}

test('hybrid sampler at a mid switch: the noisy model\'s loop up to the switch, then the clean model step by step', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '8' });
    const S = d.numTimesteps;
    const k = 3;
    for (const sampler of ['ddpm', 'ddim'] as const) {
      const seen: { name: string; t: number[] }[] = [];
      const A = withLabels(finetuned, [2, 0, 1], seen, 'A');
      const B = withLabels(pretrained, [5, 5, 5], seen, 'B');
      const got = hybridSample({ diffusion: d, noisy: A, clean: B, switchIndex: k, shape: SHAPE, sampler, generator: new torch.Generator('cpu', 3) });
      // Which model saw which (original) timesteps.
      const map = d.timestepMap;
      assert.deepEqual(seen.map((s) => s.name), [...Array(S - k).fill('A'), ...Array(k).fill('B')]);
      assert.deepEqual(seen.map((s) => s.t[0]), Array.from({ length: S }, (_, s) => map[S - 1 - s]));
      assert.ok(seen.every((s) => s.t.every((v) => v === s.t[0])));

      // By hand: A's own progressive loop stopped after S - k steps, then B with the single-step API.
      const gen = new torch.Generator('cpu', 3);
      const noiseFn = (): Tensor => torch.randn(SHAPE, { generator: gen });
      const xT = torch.randn(SHAPE, { generator: gen });
      const loopA = sampler === 'ddim' ? d.ddimSampleLoopProgressive(A, SHAPE, { noise: xT, noiseFn }) : d.pSampleLoopProgressive(A, SHAPE, { noise: xT, noiseFn });
      let x: Tensor | undefined;
      for (const s of loopA) {
        if (s.step === S - k - 1) {
          assert.equal(s.index, k);
          x = s.sample.clone();
          break;
        }
      }
      for (let i = k - 1; i >= 0; i--) {
        const t = torch.full([N], i, { dtype: 'int64' });
        const noise = torch.randn(SHAPE, { generator: gen });
        x = (sampler === 'ddim' ? d.ddimSample(B, x!, t, { noise }) : d.pSample(B, x!, t, { noise })).sample;
      }
      assert.ok(got.equal(x!), `${sampler}: the hybrid chain differs from the hand-composed one`);
      const pureA = hybridSample({ diffusion: d, noisy: A, clean: B, switchIndex: 0, shape: SHAPE, sampler, generator: new torch.Generator('cpu', 3) });
      const pureB = hybridSample({ diffusion: d, noisy: A, clean: B, switchIndex: S, shape: SHAPE, sampler, generator: new torch.Generator('cpu', 3) });
      assert.ok(maxAbsDiff(got, pureA) > 1e-4 && maxAbsDiff(got, pureB) > 1e-4, 'a mid switch must differ from both pure chains');
    }
    assert.throws(() => hybridSample({ diffusion: d, noisy: withLabels(finetuned, [0, 0, 0]), clean: withLabels(finetuned, [0, 0, 0]), switchIndex: 9, shape: SHAPE, sampler: 'ddpm', generator: new torch.Generator() }), /switchIndex must be an integer in 0\.\.8/);
    d.dispose();
  });
});

/** A made-up conditional model whose output depends on x, t and y in a way that is easy to recompute. */
function fakeForward(calls: { x: Tensor; t: number[]; y: number[] }[]) {
  return (x: Tensor, t: Tensor, y: Tensor): Tensor => torch.scope(() => {
    calls.push({ x: x.clone().keep(), t: t.toArray() as number[], y: y.toArray() as number[] });
    const yy = y.to({ dtype: 'float32' }).view([-1, 1, 1, 1]);
    const tt = t.to({ dtype: 'float32' }).view([-1, 1, 1, 1]);
    return torch.cat([x.mul(yy.add(1)).add(tt.div(100)), x.mul(0.5).add(yy)], 1);
  });
}

test('label policies: null label, target labels, and CFG on [cond; uncond] with only the conditional half returned', () => {
  torch.scope(() => {
    const calls: { x: Tensor; t: number[]; y: number[] }[] = [];
    const d = { forward: fakeForward(calls), numClasses: 4, nullLabel: 4 };
    const target = labelsOf([0, 3, 1]);
    const x = torch.randn(SHAPE);
    const t = labelsOf([7, 7, 7]);
    const apply = (p: LabelPolicy): Tensor => policyModel(d, p, target)(x, t, undefined);

    const uncond = apply({ labels: 'null', cfgScale: 4 }); // guidance is the identity on the null label
    assert.deepEqual(calls.at(-1)!.y, [4, 4, 4]);
    assert.equal(calls.length, 1);
    const cond = apply({ labels: 'target', cfgScale: 1 });
    assert.deepEqual(calls.at(-1)!.y, [0, 3, 1]);
    assert.ok(calls.at(-1)!.x.equal(x));

    const guided = apply({ labels: 'target', cfgScale: 2.5 });
    const last = calls.at(-1)!;
    assert.deepEqual(last.y, [0, 3, 1, 4, 4, 4]);
    assert.deepEqual(last.t, [7, 7, 7, 7, 7, 7]);
    assert.ok(last.x.equal(torch.cat([x, x], 0)));
    assert.deepEqual(guided.shape, [3, 6, 8, 8]);
    const [cEps, cRest] = cond.split(3, 1);
    const uEps = uncond.split(3, 1)[0];
    const expected = torch.cat([uEps.add(cEps.sub(uEps).mul(2.5)), cRest], 1);
    assert.ok(maxAbsDiff(guided, expected) < 1e-5, `guided output off by ${maxAbsDiff(guided, expected)}`);
    // Guiding fewer channels leaves the others unguided.
    const partial = apply({ labels: 'target', cfgScale: 2.5, guideChannels: 1 });
    assert.ok(maxAbsDiff(partial.narrow(1, 1, 5), cond.narrow(1, 1, 5)) < 1e-6);

    assert.throws(() => policyModel({ ...d, nullLabel: null }, { labels: 'null', cfgScale: 1 }, target), /needs a null label/);
    assert.throws(() => policyModel({ ...d, nullLabel: null }, { labels: 'target', cfgScale: 2 }, target), /needs a null label/);
    assert.throws(() => policyModel({ ...d, numClasses: 2 }, { labels: 'target', cfgScale: 1 }, target), /target label 3 is not a class/);
    assert.throws(() => policyModel(d, { labels: 'target', cfgScale: 1 }, target)(torch.randn([2, 3, 8, 8]), labelsOf([1, 1]), undefined), /batch of 2 rows for 3 target labels/);
    for (const c of calls) c.x.dispose();
  });
});

test('a guided policy in the hybrid sampler is DiT\'s sample.py CFG chain (conditional half, same noise)', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '5' });
    const y = labelsOf([2, 0, 1]);
    const model = policyModel(asDenoiser(finetuned), { labels: 'target', cfgScale: 3, guideChannels: 3 }, y);
    const got = hybridSample({ diffusion: d, noisy: model, clean: model, switchIndex: 2, shape: SHAPE, sampler: 'ddpm', generator: new torch.Generator('cpu', 5) });
    // sample.py: z doubled with null labels, forward_with_cfg, the first half kept; each step's noise doubled the same way.
    const gen = new torch.Generator('cpu', 5);
    const batch = cfgBatch(torch.randn(SHAPE, { generator: gen }), y, FINETUNED_CLASSES);
    const ref = conditionalHalf(d.pSampleLoop((x, t, k: { y: Tensor }) => finetuned.forwardWithCfg(x, t, k.y, 3), batch.x.shape, {
      noise: batch.x, modelKwargs: { y: batch.y },
      noiseFn: () => torch.scope(() => { const g = torch.randn(SHAPE, { generator: gen }); return torch.cat([g, g], 0); }),
    }));
    assert.ok(maxAbsDiff(got, ref) < 1e-5, `differs from the CFG reference by ${maxAbsDiff(got, ref)}`);
    d.dispose();
  });
});

test('proportionalLabels: class shares of the dataset, in a seeded order', () => {
  const data = [...Array(6).fill(0), ...Array(3).fill(1), 2];
  const a = proportionalLabels(data, 20, 1);
  const count = (v: number[], c: number): number => v.filter((x) => x === c).length;
  assert.deepEqual([0, 1, 2].map((c) => count(a, c)), [12, 6, 2]);
  assert.deepEqual(proportionalLabels(data, 20, 1), a);
  const b = proportionalLabels(data, 20, 2);
  assert.notDeepEqual(b, a);
  assert.deepEqual([0, 1, 2].map((c) => count(b, c)), [12, 6, 2]);
  assert.deepEqual(proportionalLabels([2, 0, 1], 3, 0).sort(), [0, 1, 2]);
  assert.throws(() => proportionalLabels([], 3, 0), /no labels/);
});

/** A fixed random projection of the pixels: a deterministic 6-d feature extractor. */
function projectionExtractor(): ProbeExtractor & { dispose(): void } {
  const w = torch.randn([3 * 8 * 8, 6], { generator: new torch.Generator('cpu', 123) }).keep();
  return {
    name: 'projection',
    dim: 6,
    features: (images: Tensor) => torch.scope(() => images.to({ dtype: 'float32' }).div(255).flatten(1).mm(w)),
    dispose: () => w.dispose(),
  };
}

function randomImages(n: number, seed: number): Tensor {
  return torch.randint(0, 256, [n, 3, 8, 8], { generator: new torch.Generator('cpu', seed), dtype: 'uint8' });
}

/** FID of a pure model computed by hand: the diffusion's own DDIM loop per batch, the generator continuing across batches. */
function handFid(d: SpacedDiffusion, modelFor: (y: Tensor) => DiffusionModel<unknown>, labels: number[], batch: number, seed: number,
  extractor: ProbeExtractor, reference: FeatureStats): number {
  return torch.scope(() => {
    const gen = new torch.Generator('cpu', seed);
    const feats: Tensor[] = [];
    for (let s = 0; s < labels.length; s += batch) {
      const shape = [Math.min(batch, labels.length - s), 3, 8, 8];
      const noise = torch.randn(shape, { generator: gen });
      const x = d.ddimSampleLoop(modelFor(labelsOf(labels.slice(s, s + batch))), shape, { noise, noiseFn: () => torch.randn(shape, { generator: gen }) });
      const u8 = x.mul(127.5).add(128).clamp(0, 255).to({ dtype: 'uint8' }); // sample_ddp.py's conversion
      feats.push(extractor.features(u8));
    }
    return frechetDistance(featureStats(torch.cat(feats, 0)), reference);
  });
}

function probe(o: { pretrainedLabels?: 'null' | 'same'; splits?: number[]; previews?: number; extractor: ProbeExtractor; reference: FeatureStats; labels: number[]; spyOn?: DiT; seen?: number[][] }): ForgettingResult {
  const d = createDiffusion({ timestepRespacing: '4' });
  const spied = (m: DiT) => ({
    ...asDenoiser(m),
    forward: (x: Tensor, t: Tensor, y: Tensor) => { if (m === o.spyOn) o.seen!.push(y.toArray() as number[]); return m.forward(x, t, y); },
  });
  try {
    return runForgettingProbe({
      pretrained: spied(pretrained), finetuned: spied(finetuned), imageShape: [3, 8, 8], diffusion: d, sampler: 'ddim',
      splits: o.splits ?? [0, 0.5, 1], labels: o.labels, cfgScale: 1.5, pretrainedLabels: o.pretrainedLabels,
      extractor: o.extractor, reference: o.reference, batchSize: 3, seed: 9, previews: o.previews,
    });
  } finally {
    d.dispose();
  }
}

test('forgetting probe: one point per split and direction, pure ends equal to FIDs computed by hand', () => {
  const extractor = projectionExtractor();
  torch.scope(() => {
    const reference = datasetStats(extractor, randomImages(20, 4));
    const labels = [0, 1, 2, 0, 1, 2, 0];
    const r = probe({ extractor, reference, labels, previews: 2 });
    assert.equal(r.metric, 'fid_projection');
    assert.equal(r.numSteps, 4);
    const fwd = r.curves['finetuned-then-pretrained']!;
    const rev = r.curves['pretrained-then-finetuned']!;
    assert.deepEqual(fwd.map((p) => [p.split, p.switchIndex, p.pretrainedSteps, p.finetunedSteps]), [[0, 0, 0, 4], [0.5, 2, 2, 2], [1, 4, 4, 0]]);
    assert.deepEqual(rev.map((p) => [p.split, p.switchIndex, p.pretrainedSteps, p.finetunedSteps]), [[0, 0, 4, 0], [0.5, 2, 2, 2], [1, 4, 0, 4]]);

    const d = createDiffusion({ timestepRespacing: '4' });
    const fine = handFid(d, (y) => policyModel(asDenoiser(finetuned), { labels: 'target', cfgScale: 1.5 }, y), labels, 3, 9, extractor, reference);
    const pre = handFid(d, (y) => withLabels(pretrained, Array(y.shape[0]).fill(PRETRAINED_CLASSES)), labels, 3, 9, extractor, reference);
    d.dispose();
    const near = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
    near(fwd[0].fid, fine, 'pure fine-tuned');
    near(fwd[2].fid, pre, 'pure pretrained (null label)');
    near(rev[0].fid, pre, 'reverse, pure pretrained');
    near(rev[2].fid, fine, 'reverse, pure fine-tuned');
    assert.ok(Math.abs(fine - pre) > 1e-6, 'the two models must score differently for the check to mean anything');
    for (const mid of [fwd[1].fid, rev[1].fid]) {
      assert.ok(Number.isFinite(mid) && mid >= 0);
      assert.ok(Math.abs(mid - fine) > 1e-9 && Math.abs(mid - pre) > 1e-9, 'a mid split must be its own chain');
    }
    assert.notEqual(fwd[1].fid, rev[1].fid);
    assert.deepEqual(r.previews['finetuned-then-pretrained']!.shape, [6, 3, 8, 8]);
    for (const t of Object.values(r.previews)) t!.dispose();
  });
  extractor.dispose();
});

test('forgetting probe: the pretrained model gets the null label by default, the target labels (with CFG) with "same"', () => {
  const extractor = projectionExtractor();
  torch.scope(() => {
    const reference = datasetStats(extractor, randomImages(10, 4));
    const labels = [2, 0, 1, 1];
    for (const mode of ['null', 'same'] as const) {
      const seen: number[][] = [];
      probe({ extractor, reference, labels, splits: [1], pretrainedLabels: mode, spyOn: pretrained, seen });
      // Split 1 is pure pretrained in the paper's direction and pure fine-tuned in the reverse: 2 batches x 4 steps.
      assert.equal(seen.length, 2 * 4);
      const rows = seen.slice(0, 4); // the first batch (3 samples)
      for (const y of rows) {
        assert.deepEqual(y, mode === 'null' ? [5, 5, 5] : [2, 0, 1, 5, 5, 5]);
      }
    }
    // The fine-tuned model always gets the target labels and its own null label for CFG.
    const seen: number[][] = [];
    probe({ extractor, reference, labels, splits: [0], spyOn: finetuned, seen });
    assert.deepEqual(seen[0], [2, 0, 1, 3, 3, 3]);
  });
  extractor.dispose();
});

test('writeForgettingReport: curve.json with every point, an SVG naming the curves, a PNG and sample grids that decode', async () => {
  const extractor = projectionExtractor();
  const reference = torch.scope(() => datasetStats(extractor, randomImages(12, 4)));
  const r = probe({ extractor, reference, labels: [0, 1, 2, 2, 1], previews: 2 });
  extractor.dispose();
  const dir = path.join(tmp, 'report');
  const files = await writeForgettingReport(dir, r, { command: 'test' });
  for (const t of Object.values(r.previews)) t!.dispose();
  const json = JSON.parse(fs.readFileSync(files.curve, 'utf8'));
  assert.equal(json.command, 'test');
  assert.equal(json.metric, 'fid_projection');
  assert.deepEqual(json.splits, [0, 0.5, 1]);
  for (const dname of ['finetuned-then-pretrained', 'pretrained-then-finetuned']) {
    assert.equal(json.curves[dname].length, 3);
    assert.deepEqual(json.curves[dname].map((p: { fid: number }) => p.fid), r.curves[dname as 'finetuned-then-pretrained']!.map((p) => p.fid));
  }
  const svg = fs.readFileSync(files.svg, 'utf8');
  assert.ok(svg.includes('pretrained at the data end (paper, Fig. 1)') && svg.includes('fine-tuned at the data end'));
  assert.ok(svg.includes('fid_projection'));
  const png = fs.readFileSync(files.png);
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.width, meta.height], [640, 420]);
  assert.equal(files.grids.length, 2);
  for (const g of files.grids) {
    const m = await sharp(g).metadata();
    // 2 samples per row, 3 rows (splits), 8 px enlarged 6x, 2 px padding.
    assert.deepEqual([m.width, m.height], [2 * 48 + 3 * 2, 3 * 48 + 4 * 2]);
  }
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
});

test('difftune forgetting end to end: saved models, an image folder, curve.json + SVG + PNG', async () => {
  const models = path.join(tmp, 'models');
  fs.mkdirSync(models, { recursive: true });
  saveDiT(path.join(models, 'pretrained.safetensors'), pretrained);
  saveDiT(path.join(models, 'finetuned.safetensors'), finetuned);
  const data = path.join(tmp, 'data');
  const pixels = randomImages(9, 8).permute(0, 2, 3, 1).contiguous().bytes();
  ['apple', 'banana', 'cherry'].forEach((cls, c) => {
    fs.mkdirSync(path.join(data, cls), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const k = c * 3 + i;
      fs.writeFileSync(path.join(data, cls, `${i}.png`), encodePng(pixels.subarray(k * 192, (k + 1) * 192), 8, 8, 3));
    }
  });
  process.env.DIFFTUNE_CACHE = path.join(tmp, 'cache');
  const projection = projectionExtractor();
  const extractor = { ...projection, name: 'iconnet', weightsFile: '', weightsHash: 'test-projection' } as unknown as FeatureExtractor;
  const out = path.join(tmp, 'cli-out');
  const logs: string[] = [];
  const args = ['--pretrained', path.join(models, 'pretrained.safetensors'), '--finetuned', path.join(models, 'finetuned.safetensors'),
    '--dataset', data, '--n', '5', '--steps', '4', '--splits', '1,0,0.5', '--batch', '2', '--previews', '2', '--out', out];
  await runForgetting(args, { extractor, log: (m) => logs.push(m) });
  const json = JSON.parse(fs.readFileSync(path.join(out, 'curve.json'), 'utf8'));
  assert.equal(json.metric, 'fid_iconnet');
  assert.deepEqual(json.splits, [0, 0.5, 1]);
  assert.equal(json.referenceImages, 9);
  assert.equal(json.pretrainedLabel, 'null');
  assert.ok(json.command.startsWith('difftune forgetting --pretrained'));
  const fwd = json.curves['finetuned-then-pretrained'];
  const rev = json.curves['pretrained-then-finetuned'];
  assert.equal(fwd.length, 3);
  assert.equal(rev.length, 3);
  assert.equal(fwd[0].fid, rev[2].fid);
  assert.equal(fwd[2].fid, rev[0].fid);
  for (const p of [...fwd, ...rev]) assert.ok(Number.isFinite(p.fid) && p.fid >= 0);
  const png = fs.readFileSync(path.join(out, 'forgetting.png'));
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  assert.ok(fs.readFileSync(path.join(out, 'forgetting.svg'), 'utf8').startsWith('<svg'));
  assert.ok(fs.existsSync(path.join(out, 'samples-finetuned-then-pretrained.png')));
  assert.ok(logs.some((l) => l.startsWith('wrote ')), logs.join('\n'));

  // One direction only, and bad flags named.
  const out2 = path.join(tmp, 'cli-out2');
  await runForgetting([...args.slice(0, -1), out2, '--reverse=false', '--pretrained-label', 'same'], { extractor, log: () => undefined });
  const json2 = JSON.parse(fs.readFileSync(path.join(out2, 'curve.json'), 'utf8'));
  assert.deepEqual(Object.keys(json2.curves), ['finetuned-then-pretrained']);
  assert.equal(json2.curves['finetuned-then-pretrained'][0].fid, fwd[0].fid, 'the fine-tuned chain does not depend on the pretrained label');
  assert.notEqual(json2.curves['finetuned-then-pretrained'][2].fid, fwd[2].fid, "'same' labels change the pretrained chain");
  await assert.rejects(runForgetting([...args, '--pretrained-label', 'other'], { extractor }), /--pretrained-label must be 'null' or 'same'/);
  await assert.rejects(runForgetting([...args, '--splits', '0,1.5'], { extractor }), /--splits: 1.5 is not a fraction in \[0, 1\]/);
  await assert.rejects(runForgetting([...args, '--sampler', 'euler'], { extractor }), /--sampler must be ddpm or ddim/);
  fs.mkdirSync(path.join(data, 'date'));
  fs.mkdirSync(path.join(data, 'elder'));
  fs.copyFileSync(path.join(data, 'apple', '0.png'), path.join(data, 'date', '0.png'));
  fs.copyFileSync(path.join(data, 'apple', '0.png'), path.join(data, 'elder', '0.png'));
  await assert.rejects(runForgetting(args, { extractor }), /has 5 classes but the fine-tuned model only 3/);
  projection.dispose();
});
