// `difftune eval` and what it is built from: the reference-statistics cache (hit, miss, and a miss
// whenever the folder, the split or the extractor's weights change), the CLI's metrics.json (named
// by extractor, and equal to the FID computed here from the network directly), its errors, and
// the trainer's in-loop FID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { mulberry32 } from '../src/data/prng';
import { splitIndices } from '../src/data/split';
import { IconClassifier } from '../src/models/icon-classifier';
import { FidInceptionV3 } from '../src/models/inception';
import { runEval } from '../src/cli/eval';
import { evaluateSamples } from '../src/eval/evaluate';
import { FeatureExtractor, ICONNET_FORMAT } from '../src/eval/extractor';
import { featureStats } from '../src/eval/feature-stats';
import { frechetDistance } from '../src/eval/frechet';
import { inLoopEval } from '../src/eval/in-loop';
import { parseRefSpec, referenceStats } from '../src/eval/reference-stats';
import { encodePng } from '../src/report/png';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-eval-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const SIDE = 8;

/** Random RGB images, side x side, HWC bytes. */
function randomImages(n: number, seed: number): Uint8Array[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const base = [rand() * 255, rand() * 255, rand() * 255];
    return Uint8Array.from({ length: SIDE * SIDE * 3 }, (_, i) => Math.min(255, Math.floor(base[i % 3] * 0.7 + rand() * 76)));
  });
}

function writePng(file: string, hwc: Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, encodePng(hwc, SIDE, SIDE, 3));
}

/** root/<a|b>/<i>.png; returns the images in ImageFolder order (class a, then b; files sorted). */
function writeDataset(root: string, images: Uint8Array[]): Uint8Array[] {
  const half = images.length >> 1;
  images.forEach((img, i) => writePng(path.join(root, i < half ? 'a' : 'b', `${String(i).padStart(3, '0')}.png`), img));
  return images;
}

/**
 * A stand-in extractor whose features are computed here in plain JS from the same pixels: per
 * channel mean and mean square. The cache and split logic can then be checked value by value.
 */
function channelMoments(hwc: Uint8Array): number[] {
  const out = [0, 0, 0, 0, 0, 0];
  for (let i = 0; i < hwc.length; i++) {
    out[i % 3] += hwc[i] / 255;
    out[3 + (i % 3)] += (hwc[i] / 255) ** 2;
  }
  return out.map((v) => v / (SIDE * SIDE));
}
function momentsExtractor(weightsHash = 'w1'): FeatureExtractor & { calls: number } {
  const ex = {
    name: 'iconnet' as const,
    dim: 6,
    weightsFile: '(test)',
    weightsHash,
    calls: 0,
    features(images: Tensor): Tensor {
      ex.calls++;
      const [n, , h, w] = images.shape;
      const chw = images.contiguous().data() as Uint8Array;
      const rows: number[] = [];
      for (let i = 0; i < n; i++) {
        const hwc = new Uint8Array(h * w * 3);
        for (let p = 0; p < h * w; p++) for (let c = 0; c < 3; c++) hwc[p * 3 + c] = chw[i * 3 * h * w + c * h * w + p];
        rows.push(...channelMoments(hwc));
      }
      return torch.tensor(rows).reshape([n, 6]);
    },
    dispose(): void {},
  };
  return ex;
}

function meanOf(rows: number[][]): number[] {
  return rows[0].map((_, j) => rows.reduce((s, r) => s + r[j], 0) / rows.length);
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

test('parseRefSpec: DIR[:train|eval|all], default all; other colons stay in the path', () => {
  assert.deepEqual(parseRefSpec('data/x'), { dir: 'data/x', split: 'all', splitSeed: 0, evalFraction: 0.1 });
  assert.equal(parseRefSpec('data/x:eval').split, 'eval');
  assert.deepEqual(parseRefSpec('c:/x:y:train', { splitSeed: 4, evalFraction: 0.2 }), { dir: 'c:/x:y', split: 'train', splitSeed: 4, evalFraction: 0.2 });
  assert.throws(() => parseRefSpec('x', { evalFraction: 1.5 }), /eval fraction/);
});

test('reference stats: computed once, then read from the cache; the split and values are those computed here', async () => {
  const root = path.join(tmp, 'ref1');
  const images = writeDataset(root, randomImages(40, 1));
  const cacheDir = path.join(tmp, 'cache1');
  const ex = momentsExtractor();
  const spec = parseRefSpec(`${root}:eval`, { evalFraction: 0.25, splitSeed: 3 });
  const first = await referenceStats(spec, ex, { resolution: SIDE, cacheDir, maxKidFeatures: 6 });
  assert.equal(first.fromCache, false);
  assert.equal(ex.calls, 1);
  assert.ok(fs.existsSync(first.file) && path.dirname(first.file) === cacheDir);
  const picked = splitIndices(40, { evalFraction: 0.25, seed: 3 }).eval;
  assert.equal(first.count, picked.length);
  assertClose(first.stats.mu, meanOf(picked.map((i) => channelMoments(images[i]))), 1e-6, 'mu');
  assert.deepEqual(first.features.shape, [6, 6]); // capped for KID
  const second = await referenceStats(spec, ex, { resolution: SIDE, cacheDir, maxKidFeatures: 6 });
  assert.equal(second.fromCache, true);
  assert.equal(ex.calls, 1, 'a cache hit must not run the extractor');
  assert.equal(second.key, first.key);
  assert.deepEqual(Array.from(second.stats.mu), Array.from(first.stats.mu));
  assert.deepEqual(Array.from(second.stats.sigma), Array.from(first.stats.sigma));
  assert.equal(second.count, first.count);
  assert.equal(torch.scope(() => second.features.sub(first.features).abs().max().item()), 0);
  const train = await referenceStats({ ...spec, split: 'train' }, ex, { resolution: SIDE, cacheDir, maxKidFeatures: 6 });
  assert.equal(train.fromCache, false);
  assert.equal(train.count, 40 - picked.length);
  for (const r of [first, second, train]) r.features.dispose();
});

test('reference stats: a changed, added or removed image, dataset.json, other weights or another resolution miss the cache', async () => {
  const root = path.join(tmp, 'ref2');
  const images = writeDataset(root, randomImages(12, 2));
  const cacheDir = path.join(tmp, 'cache2');
  const spec = parseRefSpec(root);
  const run = async (ex = momentsExtractor(), resolution = SIDE) => {
    const r = await referenceStats(spec, ex, { resolution, cacheDir });
    r.features.dispose();
    return r;
  };
  const base = await run();
  assert.equal((await run()).fromCache, true);

  const replacement = randomImages(1, 99)[0];
  writePng(path.join(root, 'a', '002.png'), replacement);
  const changed = await run();
  assert.equal(changed.fromCache, false);
  assert.notEqual(changed.key, base.key);
  const now = [...images];
  now[2] = replacement;
  assertClose(changed.stats.mu, meanOf(now.map(channelMoments)), 1e-6, 'mu after the edit');

  writePng(path.join(root, 'b', '100.png'), replacement);
  const added = await run();
  assert.equal(added.fromCache, false);
  assert.equal(added.count, 13);
  fs.rmSync(path.join(root, 'b', '100.png'));
  fs.rmSync(path.join(root, 'a', '000.png'));
  const removed = await run();
  assert.equal(removed.count, 11);
  assert.equal(removed.fromCache, false);

  fs.writeFileSync(path.join(root, 'dataset.json'), '{"name":"x"}');
  assert.equal((await run()).fromCache, false);
  assert.equal((await run()).fromCache, true);
  assert.equal((await run(momentsExtractor('w2'))).fromCache, false, 'other weights');
  assert.equal((await run(momentsExtractor(), 16)).fromCache, false, 'another resolution');
});

test('reference stats: an unreadable cache file is recomputed with a warning', async () => {
  const root = path.join(tmp, 'ref3');
  writeDataset(root, randomImages(6, 3));
  const cacheDir = path.join(tmp, 'cache3');
  const spec = parseRefSpec(root);
  const first = await referenceStats(spec, momentsExtractor(), { resolution: SIDE, cacheDir });
  first.features.dispose();
  fs.writeFileSync(first.file, 'not a safetensors file');
  const warnings: string[] = [];
  const again = await referenceStats(spec, momentsExtractor(), { resolution: SIDE, cacheDir, warn: (m) => warnings.push(m) });
  assert.equal(again.fromCache, false);
  assert.equal(warnings.length, 1);
  assert.ok(warnings[0].includes(first.file));
  assert.deepEqual(Array.from(again.stats.mu), Array.from(first.stats.mu));
  again.features.dispose();
});

/** A random-weight iconnet file: any fixed network gives a valid (if weak) feature space for checking plumbing. */
function iconnetFile(): { file: string; model: IconClassifier } {
  torch.manualSeed(7);
  const model = new IconClassifier({ numClasses: 2, widths: [8, 16, 32] });
  torch.noGrad(() => torch.scope(() => { model.forward(torch.rand([32, 3, 32, 32]).mul(2).sub(1)); })); // non-trivial BN statistics
  model.eval();
  const file = path.join(tmp, 'iconnet-test.safetensors');
  torch.saveSafetensors(file, model.stateDict(), { format: ICONNET_FORMAT, config: JSON.stringify(model.config), classes: '["a","b"]' });
  return { file, model };
}

function chw(images: Uint8Array[]): Tensor {
  return torch.scope(() => torch.stack(images.map((hwc) => torch.fromTypedArray(hwc, [SIDE, SIDE, 3]).permute([2, 0, 1]))));
}

async function captureLog<T>(fn: () => Promise<T>): Promise<{ value: T; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const warn = console.warn;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.warn = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    return { value: await fn(), out, err };
  } finally {
    console.log = log;
    console.warn = warn;
  }
}

test('difftune eval: metrics.json holds fid_iconnet and kid_iconnet, equal to the FID computed from the network here', async () => {
  const { file, model } = iconnetFile();
  const ref = path.join(tmp, 'evalref');
  const refImages = writeDataset(ref, randomImages(30, 4));
  const samplesDir = path.join(tmp, 'samples');
  const sampleImages = randomImages(20, 5);
  sampleImages.forEach((img, i) => writePng(path.join(samplesDir, `s${String(i).padStart(2, '0')}.png`), img));
  process.env.DIFFTUNE_CACHE = path.join(tmp, 'cli-cache');
  const out = path.join(tmp, 'metrics.json');
  const argv = ['--samples', samplesDir, '--ref', ref, '--extractor', `iconnet:${file}`, '--out', out, '--kid-subsets', '10'];
  const first = await captureLog(() => runEval(argv));
  const m = JSON.parse(fs.readFileSync(out, 'utf8'));
  for (const key of ['fid_iconnet', 'kid_iconnet', 'kid_iconnet_std']) assert.equal(typeof m[key], 'number', key);
  assert.equal(m.fid_inception, undefined);
  assert.equal(m.n, 20);
  assert.equal(m.n_ref, 30);
  assert.equal(m.extractor, 'iconnet');
  assert.equal(m.kid_subset_size, 20);
  assert.equal(m.reference_from_cache, false);
  assert.ok(m.warnings.some((w: string) => /20 samples/.test(w)), 'n = 20 must warn');
  assert.ok(first.err.some((w) => /20 samples/.test(w)));
  assert.ok(fs.readdirSync(path.join(tmp, 'cli-cache', 'stats')).length === 1);

  const direct = torch.noGrad(() => torch.scope(() => {
    const feats = (imgs: Uint8Array[]) => model.features(chw(imgs).float().div(127.5).sub(1)).double();
    return frechetDistance(featureStats(feats(sampleImages)), featureStats(feats(refImages)));
  }));
  assert.ok(Math.abs(m.fid_iconnet - direct) <= 1e-6 * Math.max(1, direct), `eval ${m.fid_iconnet}, direct ${direct}`);

  await captureLog(() => runEval(argv));
  const again = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(again.reference_from_cache, true);
  assert.equal(again.fid_iconnet, m.fid_iconnet);
  assert.equal(again.kid_iconnet, m.kid_iconnet);

  // The same samples as a .safetensors of floats in [-1, 1] (as `difftune sample --out X.safetensors` writes).
  const st = path.join(tmp, 'samples.safetensors');
  torch.scope(() => torch.saveSafetensors(st, { samples: chw(sampleImages).float().sub(127.5).div(127.5) }));
  await captureLog(() => runEval(['--samples', st, '--ref', ref, '--extractor', `iconnet:${file}`, '--out', out, '--kid-subsets', '10']));
  const fromFile = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(fromFile.fid_iconnet, m.fid_iconnet);
  assert.equal(fromFile.kid_iconnet, m.kid_iconnet);

  // A set against itself (the reference folder as samples): FID ~0.
  await captureLog(() => runEval(['--samples', ref, '--ref', ref, '--extractor', `iconnet:${file}`, '--out', out, '--kid-subsets', '10']));
  const self = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.ok(Math.abs(self.fid_iconnet) < 1e-6 * m.fid_iconnet, `self FID ${self.fid_iconnet}`);
});

test("evaluateSamples with 'inception:FILE': metrics named fid_inception / kid_inception, from pool3 features", async () => {
  torch.manualSeed(2);
  const model = new FidInceptionV3(); // random weights: the plumbing and the naming are under test here (the network has its own tests)
  const file = path.join(tmp, 'inception.safetensors');
  torch.saveSafetensors(file, model.stateDict());
  const ref = path.join(tmp, 'evalref-inception');
  writeDataset(ref, randomImages(2, 12));
  const samples = chw(randomImages(2, 13));
  const m = await evaluateSamples({ samples, ref, extractor: `inception:${file}`, kidSubsets: 2, cacheDir: path.join(tmp, 'cache-inception'), warn: () => {} });
  samples.dispose();
  fs.rmSync(file);
  assert.equal(m.extractor, 'inception');
  assert.equal(m.feature_dim, 2048);
  assert.equal(m.fid_iconnet, undefined);
  for (const key of ['fid_inception', 'kid_inception', 'kid_inception_std']) assert.ok(Number.isFinite(m[key]), key);
  assert.ok((m.fid_inception as number) > 0);
  assert.ok((m.warnings as string[]).some((w) => /2 samples.*feature dimension \(2048\)/.test(w)));
});

test('difftune eval: a bad --ref or --samples path is an error naming it', async () => {
  const { file } = iconnetFile();
  const samplesDir = path.join(tmp, 'samples-bad');
  randomImages(3, 6).forEach((img, i) => writePng(path.join(samplesDir, `${i}.png`), img));
  const missing = path.join(tmp, 'no-such-dataset');
  await assert.rejects(runEval(['--samples', samplesDir, '--ref', `${missing}:eval`, '--extractor', `iconnet:${file}`]),
    (e: Error) => e.message.includes(missing) && /does not exist/.test(e.message));
  const notDir = path.join(samplesDir, '0.png');
  await assert.rejects(runEval(['--samples', samplesDir, '--ref', notDir, '--extractor', `iconnet:${file}`]),
    (e: Error) => e.message.includes(notDir) && /not a folder/.test(e.message));
  const noSamples = path.join(tmp, 'no-samples');
  const ref = path.join(tmp, 'evalref-bad');
  writeDataset(ref, randomImages(4, 7));
  await assert.rejects(runEval(['--samples', noSamples, '--ref', ref, '--extractor', `iconnet:${file}`]),
    (e: Error) => e.message.includes(noSamples));
  await assert.rejects(runEval(['--samples', samplesDir]), /--ref is required/);
});

test('inLoopEval: FID of n samples drawn in batches against reference stats, named fid_<extractor>; warns once for small n', () => {
  const ex = momentsExtractor();
  const pool = randomImages(50, 8);
  const refRows = randomImages(40, 9).map(channelMoments);
  const refStats = torch.scope(() => featureStats(torch.tensor(refRows.flat()).reshape([40, 6])));
  const calls: number[] = [];
  let next = 0;
  const sample = (k: number): Tensor => {
    calls.push(k);
    const t = chw(pool.slice(next, next + k));
    next += k;
    return t;
  };
  const warnings: string[] = [];
  const r = inLoopEval({ sample, refStats, extractor: ex, n: 50, batchSize: 20, warn: (m) => warnings.push(m) });
  assert.deepEqual(calls, [20, 20, 10]);
  assert.equal(r.name, 'fid_iconnet');
  assert.equal(r.n, 50);
  const want = torch.scope(() => frechetDistance(featureStats(torch.tensor(pool.map(channelMoments).flat()).reshape([50, 6])), refStats));
  assert.ok(Math.abs(r.fid - want) <= 1e-9 * Math.max(1, want), `${r.fid} vs ${want}`);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /50 samples/);
  next = 0;
  inLoopEval({ sample, refStats, extractor: ex, n: 50, batchSize: 25, warn: (m) => warnings.push(m) });
  assert.equal(warnings.length, 1, 'the same n warns once');
  assert.throws(() => inLoopEval({ sample: () => torch.zeros([2, 3, 8, 8]), refStats, extractor: ex, n: 2, warn: () => {} }), /must return uint8/);
  assert.throws(() => inLoopEval({ sample, refStats, extractor: { ...ex, dim: 7 }, n: 2, warn: () => {} }), /dimension 6/);
});

test('difftune eval: too few reference images are flagged; a corrupt one stops it naming --on-error, or is left out with --on-error skip', async () => {
  const { file } = iconnetFile();
  const ref = path.join(tmp, 'evalref-few');
  writeDataset(ref, randomImages(4, 21));
  const samplesDir = path.join(tmp, 'samples-few');
  randomImages(4, 22).forEach((img, i) => writePng(path.join(samplesDir, `s${i}.png`), img));
  const out = path.join(tmp, 'metrics-few.json');
  const argv = ['--samples', samplesDir, '--ref', ref, '--extractor', `iconnet:${file}`, '--out', out, '--kid-subsets', '2', '--no-cache'];
  const few = await captureLog(() => runEval(argv));
  const m = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(m.reliable, false);
  assert.ok(m.warnings.some((w: string) => /only 4 reference images .*unreliable/.test(w)), m.warnings.join('\n'));
  assert.ok(few.out.some((l) => /^fid_iconnet .*UNRELIABLE/.test(l)), few.out.join('\n'));

  fs.writeFileSync(path.join(ref, 'a', 'zz-broken.png'), 'not a png');
  await assert.rejects(runEval(argv), /zz-broken\.png[\s\S]*eval --on-error skip/);
  const skipped = await captureLog(() => runEval([...argv, '--on-error', 'skip']));
  assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).n_ref, 4, 'the broken image is left out');
  assert.ok(skipped.err.some((l) => /skipping .*zz-broken\.png/.test(l)), skipped.err.join('\n'));
});
