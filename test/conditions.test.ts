// The five ControlNet conditions (src/data/conditions) on synthetic images whose answers are known
// by construction: Canny finds exactly a square's border and follows a weak edge only where it
// touches a strong one, sketch is canny's inverted strokes with grey levels in between, grayscale
// is PIL's convert('L') (checked against PIL itself when /usr/bin/python3 has it), lowres is exact
// on block images, k-means reproduces a k-colour image. Then the convergence metric, the pair
// folder CLI and its reader.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { runDatasets } from '../src/cli/datasets';
import { loadConditionPairs } from '../src/data/condition-pairs';
import {
  CONDITION_KINDS, ConditionKind, conditionChannels, conditionDistance, extractCondition, resolveConditionOptions,
} from '../src/data/conditions';
import { readPairsManifest } from '../src/data/conditions/pairs-manifest';
import { decodeImage } from '../src/data/decode';
import { mulberry32 } from '../src/data/prng';
import { makeShapes } from '../src/data/shapes';
import { encodePng } from '../src/report/png';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-conditions-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** [1, 3, S, S] float32 image: grey level fill(y, x) in [-1, 1] on all channels. */
function greyImage(size: number, fill: (y: number, x: number) => number): Tensor {
  const px = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) px[(c * size + y) * size + x] = fill(y, x);
  return torch.fromTypedArray(px, [1, 3, size, size]);
}

/** Row strings of a 1-channel map: '#' where the value is +1, '.' where -1, 'o' in between. */
function picture(t: Tensor): string[] {
  const [, , H, W] = t.shape;
  const d = t.data() as Float32Array;
  return Array.from({ length: H }, (_, y) => Array.from(d.subarray(y * W, y * W + W), (v) => (v === 1 ? '#' : v === -1 ? '.' : 'o')).join(''));
}

const inSquare = (y: number, x: number, lo: number, hi: number) => y >= lo && y < hi && x >= lo && x < hi;

test('canny: a bright square on dark gives exactly its one-pixel border, for any blur', () => {
  const img = greyImage(32, (y, x) => (inSquare(y, x, 8, 24) ? 1 : -1));
  const ring = Array.from({ length: 32 }, (_, y) => Array.from({ length: 32 }, (_, x) => (inSquare(y, x, 8, 24) && !inSquare(y, x, 9, 23) ? '#' : '.')).join(''));
  for (const sigma of [undefined, 0, 1]) {
    const edges = extractCondition('canny', img, sigma === undefined ? {} : { sigma });
    assert.deepEqual(edges.shape, [1, 1, 32, 32]);
    assert.equal(edges.dtype, 'float32');
    assert.deepEqual(picture(edges), ring, `sigma ${sigma}`);
  }
});

test('canny: edges lie on the bright side, so a dark square gets the ring just outside it', () => {
  const edges = picture(extractCondition('canny', greyImage(32, (y, x) => (inSquare(y, x, 8, 24) ? -1 : 1))));
  // Straight stretches of the sides (the blurred corners round off): column 7 and 24, row 7 and 23.
  for (let i = 11; i < 21; i++) {
    assert.equal(edges[i].slice(6, 10), '.#..', `left side, row ${i}`);
    assert.equal(edges[i].slice(22, 26), '..#.', `right side, row ${i}`);
    assert.equal(edges[6][i] + edges[7][i] + edges[8][i] + edges[9][i], '.#..', `top side, column ${i}`);
    assert.equal(edges[22][i] + edges[23][i] + edges[24][i] + edges[25][i], '..#.', `bottom side, column ${i}`);
  }
  for (const row of edges.slice(0, 5).concat(edges.slice(27))) assert.equal(row, '.'.repeat(32), 'nothing far outside');
  for (let y = 10; y < 22; y++) assert.equal(edges[y].slice(10, 22), '.'.repeat(12), 'nothing inside');
});

test('canny: hysteresis keeps a weak edge connected to a strong one and drops an isolated weak one', () => {
  // Luma in [0, 1]: left 0; right half 0.3 above row 16 (a strong step, 0.3 >= high 0.2) and 0.15
  // below (weak: 0.1 <= 0.15 < 0.2); an isolated 0.15 square on the left. No blur: magnitudes are exact.
  const luma = (y: number, x: number) => (x >= 16 ? (y < 16 ? 0.3 : 0.15) : inSquare(y, x, 3, 10) ? 0.15 : 0);
  const img = greyImage(32, (y, x) => luma(y, x) * 2 - 1);
  const column16 = (p: string[]) => p.map((row) => row[16]).join('');
  const withHysteresis = picture(extractCondition('canny', img, { sigma: 0 }));
  assert.equal(column16(withHysteresis).slice(0, 31), '#'.repeat(31), 'the whole step edge, weak half included');
  for (let y = 0; y < 12; y++) assert.equal(withHysteresis[y].slice(0, 12), '.'.repeat(12), `isolated weak square, row ${y}`);
  // Without a weak band (low = high) only the strong half is left.
  const strongOnly = picture(extractCondition('canny', img, { sigma: 0, low: 0.2, high: 0.2 }));
  assert.equal(column16(strongOnly).slice(0, 15), '#'.repeat(15));
  assert.equal(column16(strongOnly).slice(17), '.'.repeat(15));
  // Lower thresholds find the isolated square's border too.
  const low = picture(extractCondition('canny', img, { sigma: 0, low: 0.1, high: 0.1 }));
  assert.equal(low[3].slice(3, 10), '#######');
});

test('every condition: a mirrored image gives the mirrored condition', () => {
  const { images } = makeShapes(6, 32, 3);
  for (const kind of CONDITION_KINDS) {
    const a = extractCondition(kind, images.flip(3));
    const b = extractCondition(kind, images).flip(3);
    assert.ok(a.sub(b).abs().max().item() < 1e-6, kind);
  }
});

test('sketch: inverted canny strokes on white, faint edges as grey strokes', () => {
  const square = greyImage(32, (y, x) => (inSquare(y, x, 8, 24) ? 1 : -1));
  const sketch = extractCondition('sketch', square);
  assert.deepEqual(sketch.shape, [1, 1, 32, 32]);
  assert.ok(sketch.equal(extractCondition('canny', square).neg()), 'full-contrast strokes are black (-1) on white (+1)');
  // A vertical step of luma contrast 0.1, no blur: magnitude 0.1 (on the 1/4096 grid), between low 0.05 and high 0.2.
  const faint = extractCondition('sketch', greyImage(16, (_, x) => (x >= 8 ? 0.1 * 2 - 1 : -1)), { sigma: 0 });
  const m = Math.round(0.1 * 4096) / 4096;
  const grey = 1 - (2 * (m - 0.05)) / 0.15;
  const d = faint.data() as Float32Array;
  for (let y = 0; y < 16; y++) {
    for (let x = 0; x < 16; x++) {
      assert.ok(Math.abs(d[y * 16 + x] - (x === 8 ? grey : 1)) < 1e-6, `(${y}, ${x}) = ${d[y * 16 + x]}`);
    }
  }
});

/** PIL's convert('L') on one pixel: (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
const pilLuma = (r: number, g: number, b: number) => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;

/** uint8 RGB pixels (HWC) -> [1, 3, H, W] in [-1, 1], as ImageDataset.batch does it. */
function fromBytes(rgb: Uint8Array, size: number, dtype: 'float32' | 'float64'): Tensor {
  return torch.fromTypedArray(rgb, [1, size, size, 3]).permute(0, 3, 1, 2).to({ dtype }).div(127.5).sub(1);
}

function toBytes(t: Tensor): number[] {
  return t.add(1).mul(127.5).add(0.5).floor().toArray();
}

test('grayscale: ITU-R 601 luma rounds to PIL\'s byte on hand pixels', () => {
  // The last two are where PIL's fixed point and the decimal weights (0.299, 0.587, 0.114) round apart.
  const pixels = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [10, 20, 30], [200, 100, 50], [1, 2, 3], [128, 128, 127], [0, 0, 250], [0, 170, 15]];
  const rgb = Uint8Array.from(pixels.flat().concat(new Array(16 * 3 - pixels.length * 3).fill(0)));
  const want = Array.from({ length: 16 }, (_, i) => pilLuma(rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2]));
  assert.deepEqual(want.slice(0, 11), [76, 150, 29, 255, 0, 18, 124, 2, 128, 28, 102]);
  for (const dtype of ['float64', 'float32'] as const) {
    const g = extractCondition('grayscale', fromBytes(rgb, 4, dtype));
    assert.deepEqual(g.shape, [1, 1, 4, 4]);
    assert.deepEqual(toBytes(g), want, dtype);
  }
});

const PIL_L = `
import sys
from PIL import Image
size = int(sys.argv[2])
img = Image.frombytes('RGB', (size, size), open(sys.argv[1], 'rb').read())
sys.stdout.write(img.convert('L').tobytes().hex())
`;
const hasPil = spawnSync('/usr/bin/python3', ['-c', 'import PIL'], { stdio: 'ignore' }).status === 0;

test('grayscale: equals PIL convert(\'L\') on random images', { skip: hasPil ? false : '/usr/bin/python3 has no PIL' }, () => {
  const size = 24;
  const rand = mulberry32(7);
  for (let k = 0; k < 3; k++) {
    const rgb = Uint8Array.from({ length: size * size * 3 }, () => Math.floor(rand() * 256));
    const file = path.join(tmp, `rgb-${k}.raw`);
    fs.writeFileSync(file, rgb);
    const r = spawnSync('/usr/bin/python3', ['-c', PIL_L, file, String(size)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const pil = Array.from(Buffer.from(r.stdout, 'hex'));
    assert.equal(pil.length, size * size);
    assert.deepEqual(toBytes(extractCondition('grayscale', fromBytes(rgb, size, 'float64'))), pil, `image ${k}, float64`);
    const f32 = toBytes(extractCondition('grayscale', fromBytes(rgb, size, 'float32')));
    assert.ok(f32.every((v, i) => Math.abs(v - pil[i]) <= 1), `image ${k}, float32 within one level`);
  }
});

test('lowres: constant stays constant, 4x4 block images are reproduced, others get their block means', () => {
  const constant = greyImage(16, () => 0.25);
  for (const upsample of ['nearest', 'bilinear'] as const) {
    const out = extractCondition('lowres', constant, { upsample });
    assert.deepEqual(out.shape, [1, 3, 16, 16]);
    assert.ok(out.sub(0.25).abs().max().item() < 1e-7, upsample);
  }
  const rand = mulberry32(3);
  const blocks = Array.from({ length: 3 * 4 * 4 }, () => Math.round(rand() * 254) / 127 - 1);
  const px = new Float32Array(3 * 16 * 16);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) px[(c * 16 + y) * 16 + x] = blocks[(c * 4 + (y >> 2)) * 4 + (x >> 2)];
  const blockImage = torch.fromTypedArray(px, [1, 3, 16, 16]);
  assert.ok(extractCondition('lowres', blockImage).sub(blockImage).abs().max().item() < 1e-6);
  // Noise: every pixel is the mean of its 4x4 block.
  const noise = torch.fromTypedArray(Float32Array.from({ length: 3 * 8 * 8 }, () => rand() * 2 - 1), [1, 3, 8, 8]);
  const n = noise.data() as Float32Array;
  const out = extractCondition('lowres', noise).data() as Float32Array;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        let s = 0;
        for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) s += n[(c * 8 + (y & ~3) + dy) * 8 + (x & ~3) + dx];
        assert.ok(Math.abs(out[(c * 8 + y) * 8 + x] - s / 16) < 1e-6);
      }
    }
  }
  assert.throws(() => extractCondition('lowres', greyImage(10, () => 0)), /10x10 is not a multiple of factor 4/);
});

test('segmentation: k clusters reproduce a k-colour image (a one-pixel colour included); regions get their mean colour', () => {
  const colours = [[0.8, -0.2, 0.1], [-1, -1, 0.5], [0.3, 0.9, -0.7]];
  const region = (y: number, x: number) => (y === 2 && x === 13 ? 2 : y < 8 ? 0 : 1);
  const px = new Float32Array(3 * 16 * 16);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) px[(c * 16 + y) * 16 + x] = colours[region(y, x)][c];
  const img = torch.fromTypedArray(px, [1, 3, 16, 16]);
  for (const clusters of [3, 5]) {
    const seg = extractCondition('segmentation', img, { clusters });
    assert.deepEqual(seg.shape, [1, 3, 16, 16]);
    assert.ok(seg.sub(img).abs().max().item() < 1e-6, `clusters ${clusters}`);
  }
  // A horizontal ramp in 2 clusters: two colours, each the mean of the pixels that carry it.
  const ramp = greyImage(8, (_, x) => x / 7 * 2 - 1);
  const seg = extractCondition('segmentation', ramp, { clusters: 2 });
  const s = seg.data() as Float32Array;
  const r = ramp.data() as Float32Array;
  const groups = new Map<number, number[]>();
  for (let i = 0; i < 64; i++) groups.set(s[i], [...(groups.get(s[i]) ?? []), r[i]]);
  assert.equal(groups.size, 2);
  for (const [value, members] of groups) assert.ok(Math.abs(value - members.reduce((a, b) => a + b, 0) / members.length) < 1e-6);
  // Images of a batch are clustered independently.
  const { images } = makeShapes(3, 16, 5);
  const batched = extractCondition('segmentation', images);
  for (let i = 0; i < 3; i++) assert.ok(batched.narrow(0, i, 1).sub(extractCondition('segmentation', images.narrow(0, i, 1))).abs().max().item() < 1e-6);
});

test('extractCondition: shapes, channels, range, dtype; it frees all it makes but its result', () => {
  const { images } = makeShapes(4, 32, 11);
  for (const kind of CONDITION_KINDS) {
    const before = torch.liveTensorCount();
    const c = extractCondition(kind, images);
    assert.equal(torch.liveTensorCount(), before + 1, `${kind}: one live tensor more, the result`);
    torch.scope(() => {
      assert.deepEqual(c.shape, [4, conditionChannels(kind), 32, 32], kind);
      assert.ok(c.min().item() >= -1 - 1e-6 && c.max().item() <= 1 + 1e-6, kind);
      if (kind === 'canny') assert.ok(c.eq(1).logicalOr(c.eq(-1)).all().item(), 'canny is binary');
      assert.equal(extractCondition(kind, images.double()).dtype, 'float64');
    });
    c.dispose();
    assert.equal(torch.liveTensorCount(), before, kind);
  }
});

test('conditionDistance: 0 for real pairs, > 0 for mismatched ones; errors name the problem', () => {
  const { images } = makeShapes(4, 32, 21);
  for (const kind of CONDITION_KINDS) {
    const cond = extractCondition(kind, images);
    const same = conditionDistance(kind, images, cond);
    assert.deepEqual(same.shape, [4]);
    assert.deepEqual(same.toArray(), [0, 0, 0, 0], kind);
    const other = conditionDistance(kind, images, cond.roll(1, 0)).toArray();
    assert.ok(other.every((v) => v > 1e-3), `${kind}: ${other}`);
    // The per-sample MSE, computed by hand for sample 0.
    const c0 = extractCondition(kind, images.narrow(0, 0, 1)).data() as Float32Array;
    const c3 = cond.narrow(0, 3, 1).contiguous().data() as Float32Array;
    assert.ok(Math.abs(other[0] - c0.reduce((a, v, i) => a + (v - c3[i]) ** 2, 0) / c0.length) < 1e-6);
  }
  assert.throws(() => conditionDistance('canny', images, torch.zeros([4, 3, 32, 32])), /condition must be \[4, 1, 32, 32\]/);
  assert.throws(() => extractCondition('canny', torch.zeros([4, 1, 32, 32])), /images must be floating \[B, 3, H, W\]/);
  assert.throws(() => extractCondition('canny', images, { clusters: 3 }), /option clusters does not apply \(it takes sigma, low, high\)/);
  assert.throws(() => extractCondition('canny', images, { low: 0.5, high: 0.2 }), /low \(0.5\) must be at most high \(0.2\)/);
  assert.throws(() => extractCondition('segmentation', images, { clusters: 2.5 }), /clusters must be an integer/);
  assert.throws(() => extractCondition('nope' as ConditionKind, images), /kind must be one of canny, sketch, segmentation, grayscale, lowres; got "nope"/);
  assert.deepEqual(resolveConditionOptions('canny', {}, 32), { sigma: 0.5, low: 0.1, high: 0.2 });
  assert.deepEqual(resolveConditionOptions('canny', {}, 512), { sigma: 1, low: 0.1, high: 0.2 });
});

/** IN/<class>/<file>: coloured shapes of a few sizes (non-square ones exercise the crop). */
async function makeInputFolder(root: string): Promise<void> {
  const rand = mulberry32(99);
  const files: [string, string, number, number][] = [['apple', 'a1.png', 16, 16], ['apple', 'sub/a2.png', 24, 20], ['berry', 'b1.png', 16, 16], ['berry', 'b2.jpg', 32, 32]];
  for (const [cls, name, w, h] of files) {
    const px = new Uint8Array(w * h * 3);
    const [r, g, b] = [rand() * 255, rand() * 255, rand() * 255].map(Math.floor);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (Math.abs(x - w / 2) < w / 4 && Math.abs(y - h / 2) < h / 3) px.set([r, g, b], (y * w + x) * 3);
    const file = path.join(root, cls, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (name.endsWith('.png')) fs.writeFileSync(file, encodePng(px, w, h, 3));
    else await sharp(Buffer.from(px), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 95 }).toFile(file);
  }
}

async function pngBytes(file: string): Promise<{ data: Buffer; channels: number }> {
  const grey = (await sharp(file).metadata()).channels === 1;
  const { data, info } = await (grey ? sharp(file).toColourspace('b-w') : sharp(file)).raw().toBuffer({ resolveWithObject: true });
  return { data, channels: info.channels };
}

test('datasets condition: writes image/condition pairs and a manifest; the reader loads them back', async () => {
  const input = path.join(tmp, 'in');
  await makeInputFolder(input);
  const { log, error } = console;
  console.log = console.error = () => undefined;
  try {
    for (const kind of CONDITION_KINDS) {
      const out = path.join(tmp, `pairs-${kind}`);
      await runDatasets(['condition', '--kind', kind, '--in', input, '--out', out, '--resolution', '16']);
      const m = readPairsManifest(out);
      assert.equal(m.kind, kind);
      assert.equal(m.count, 4);
      assert.deepEqual(m.classes, { apple: 2, berry: 2 });
      assert.equal(m.resolution, 16);
      assert.equal(m.source.dir, path.resolve(input));
      assert.match(m.hashes.images, /^[0-9a-f]{64}$/);
      assert.deepEqual(m.options, resolveConditionOptions(kind, {}, 16));
      assert.deepEqual(fs.readdirSync(path.join(out, 'conditions', 'apple')).sort(), ['a1.png', 'sub__a2.png']);
      assert.ok(!fs.readdirSync(tmp).some((f) => f.startsWith(`pairs-${kind}.tmp-`)), 'no temp folder left');

      // Each image is the center crop decode.ts makes; its condition is extracted from it.
      const src = path.join(input, 'berry', 'b2.jpg');
      const rgb = await decodeImage(src, { resolution: 16 });
      const img = await pngBytes(path.join(out, 'images', 'berry', 'b2.png'));
      assert.deepEqual(Uint8Array.from(img.data), rgb);
      const cond = await pngBytes(path.join(out, 'conditions', 'berry', 'b2.png'));
      assert.equal(cond.channels, conditionChannels(kind));
      const want = extractCondition(kind, fromBytes(rgb, 16, 'float64')).permute(0, 2, 3, 1).contiguous();
      assert.deepEqual(Array.from(cond.data), toBytes(want), `${kind}: condition png`);

      const pairs = await loadConditionPairs(out, { resolution: 16 });
      try {
        assert.equal(pairs.kind, kind);
        assert.deepEqual(pairs.classes, ['apple', 'berry']);
        assert.deepEqual(pairs.labels.toArray(), [0, 0, 1, 1]);
        assert.deepEqual(pairs.conditions.shape, [4, conditionChannels(kind), 16, 16]);
        const { x, y, c } = pairs.batch([0, 1, 2, 3]);
        assert.deepEqual(y.toArray(), [0, 0, 1, 1]);
        assert.deepEqual(c.shape, [4, conditionChannels(kind), 16, 16]);
        // The metric on real pairs: the PNG's 8-bit rounding is all that separates them.
        const d = conditionDistance(kind, x, c).toArray();
        assert.ok(d.every((v) => v <= (1 / 127.5) ** 2), `${kind}: ${d}`);
        if (kind === 'canny') assert.deepEqual(d, [0, 0, 0, 0]);
        const flipped = pairs.batch([2], [true]);
        assert.ok(flipped.c.equal(c.narrow(0, 2, 1).flip(3)), 'a flip mirrors the condition with its image');
      } finally {
        pairs.dispose();
      }
    }
  } finally {
    Object.assign(console, { log, error });
  }
});

test('datasets condition: bad --kind, foreign --out, wrong resolution and edited files are errors that say so', async () => {
  const input = path.join(tmp, 'in-errors');
  await makeInputFolder(input);
  const out = path.join(tmp, 'pairs-errors');
  await assert.rejects(runDatasets(['condition', '--kind', 'edges', '--in', input, '--out', out]),
    /--kind must be one of canny, sketch, segmentation, grayscale, lowres; got "edges"/);
  await assert.rejects(runDatasets(['condition', '--kind', 'canny', '--in', input, '--out', out, '--options', 'clusters=3']), /option clusters does not apply/);
  const foreign = path.join(tmp, 'foreign');
  fs.mkdirSync(foreign);
  fs.writeFileSync(path.join(foreign, 'keep.txt'), 'mine');
  await assert.rejects(runDatasets(['condition', '--kind', 'canny', '--in', input, '--out', foreign]), /not a condition-pair folder/);
  assert.equal(fs.readFileSync(path.join(foreign, 'keep.txt'), 'utf8'), 'mine');

  const { log, error } = console;
  console.log = console.error = () => undefined;
  try {
    // Default resolution: the first image's shorter side (apple/a1.png, 16 px). A second build replaces the first.
    await runDatasets(['condition', '--kind', 'grayscale', '--in', input, '--out', out]);
    await runDatasets(['condition', '--kind', 'lowres', '--in', input, '--out', out, '--options', 'upsample=bilinear']);
  } finally {
    Object.assign(console, { log, error });
  }
  const m = readPairsManifest(out);
  assert.equal(m.resolution, 16);
  assert.deepEqual(m.options, { factor: 4, upsample: 'bilinear' });
  await assert.rejects(loadConditionPairs(out, { resolution: 32 }), /built at 16 px, not 32/);
  fs.writeFileSync(path.join(out, 'conditions', 'apple', 'a1.png'), encodePng(new Uint8Array(16 * 16 * 3), 16, 16, 3));
  await assert.rejects(loadConditionPairs(out), /pixels under conditions\/ do not match manifest.json's hashes.conditions/);
  fs.rmSync(path.join(out, 'conditions', 'apple', 'a1.png'));
  await assert.rejects(loadConditionPairs(out), /do not hold the same files \(apple\/a1.png is in only one\)/);
});
