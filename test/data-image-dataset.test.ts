// ImageDataset: loading a folder (with a corrupt file thrown on or skipped with a warning),
// and batch(): x / 127.5 - 1 in float32 and horizontal flips, checked value by value against
// the closed form computed here in JS.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import * as torch from '../src/torch';
import { ImageDataset } from '../src/data/image-dataset';
import { mulberry32 } from '../src/data/prng';
import { encodePng } from '../src/report/png';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-dataset-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function solidPng(file: string, size: number, rgb: number[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const px = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) px.set(rgb, i * 3);
  fs.writeFileSync(file, encodePng(px, size, size, 3));
}

/** root/apple: two PNGs and a corrupt one; root/berry: a JPEG (sharp) and a PNG. */
async function makeFolder(): Promise<{ root: string; corrupt: string }> {
  const root = path.join(tmp, 'set');
  solidPng(path.join(root, 'apple', 'a1.png'), 12, [255, 0, 0]);
  solidPng(path.join(root, 'apple', 'a3.png'), 20, [0, 255, 0]);
  const corrupt = path.join(root, 'apple', 'a2.png');
  fs.writeFileSync(corrupt, Buffer.from('\x89PNG\r\n\x1a\n broken'));
  fs.mkdirSync(path.join(root, 'berry'), { recursive: true });
  await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 0, g: 0, b: 255 } } }).jpeg({ quality: 100 }).toFile(path.join(root, 'berry', 'b1.jpg'));
  solidPng(path.join(root, 'berry', 'b2.png'), 8, [10, 20, 30]);
  return { root, corrupt };
}

test('fromFolder: a corrupt image throws naming it; skip mode warns with its name and loads the rest', async () => {
  const { root, corrupt } = await makeFolder();
  await assert.rejects(ImageDataset.fromFolder(root, { resolution: 4 }), (e: Error) => e.message.includes(corrupt));

  const warnings: string[] = [];
  const ds = await ImageDataset.fromFolder(root, { resolution: 4, onError: 'skip', concurrency: 2, warn: (m) => warnings.push(m) });
  assert.equal(warnings.length, 1);
  assert.ok(warnings[0].includes(corrupt), warnings[0]);
  assert.equal(ds.length, 4);
  assert.deepEqual(ds.classes, ['apple', 'berry']);
  assert.deepEqual(ds.files.map((f) => path.relative(root, f)), ['apple/a1.png', 'apple/a3.png', 'berry/b1.jpg', 'berry/b2.png']);
  assert.deepEqual(ds.labels.toArray(), [0, 0, 1, 1]);
  assert.equal(ds.images.dtype, 'uint8');
  assert.deepEqual(ds.images.shape, [4, 3, 4, 4]);
  const px = ds.images.data() as Uint8Array;
  const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]];
  for (let i = 0; i < 4; i++) {
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 16; p++) {
        const v = px[(i * 3 + c) * 16 + p];
        assert.ok(Math.abs(v - colours[i][c]) <= (i === 2 ? 2 : 0), `image ${i} channel ${c}: ${v}`);
      }
    }
  }
  ds.dispose();
  assert.ok(ds.images.isDisposed && ds.labels.isDisposed);
});

function randomDataset(n: number, h: number, w: number, seed: number): { ds: ImageDataset; pixels: Uint8Array; labels: number[] } {
  const rand = mulberry32(seed);
  const pixels = Uint8Array.from({ length: n * 3 * h * w }, () => Math.floor(rand() * 256));
  pixels[0] = 0; pixels[1] = 255; pixels[2] = 127; pixels[3] = 128; // the ends and the middle of the range
  const labels = Array.from({ length: n }, (_, i) => i % 3);
  const ds = ImageDataset.fromTensors(torch.fromTypedArray(pixels, [n, 3, h, w]), torch.fromTypedArray(BigInt64Array.from(labels, BigInt)), ['p', 'q', 'r']);
  return { ds, pixels, labels };
}

test('batch(): x / 127.5 - 1 exactly in float32, flips mirror the width, labels follow the indices', () => {
  const [n, h, w] = [6, 3, 5];
  const { ds, pixels, labels } = randomDataset(n, h, w, 7);
  const indices = [4, 0, 4, 2];
  const flip = [false, true, true, false];
  const live = torch.liveTensorCount();
  const { x, y } = ds.batch(indices, flip);
  assert.equal(x.dtype, 'float32');
  assert.deepEqual(x.shape, [4, 3, h, w]);
  assert.equal(y.dtype, 'int64');
  assert.deepEqual(y.toArray(), indices.map((i) => labels[i]));
  const got = x.data() as Float32Array;
  for (let b = 0; b < indices.length; b++) {
    for (let c = 0; c < 3; c++) {
      for (let r = 0; r < h; r++) {
        for (let col = 0; col < w; col++) {
          const srcCol = flip[b] ? w - 1 - col : col;
          const v = pixels[((indices[b] * 3 + c) * h + r) * w + srcCol];
          const expected = Math.fround(Math.fround(v / 127.5) - 1);
          assert.equal(got[((b * 3 + c) * h + r) * w + col], expected);
        }
      }
    }
  }
  x.dispose();
  y.dispose();
  assert.equal(torch.liveTensorCount(), live, 'batch() leaves only x and y alive');

  const plain = ds.batch(new Uint32Array([1]));
  const noFlip = ds.batch([1], [false]);
  assert.deepEqual(plain.x.toArray(), noFlip.x.toArray());
  ds.dispose();
});

test('subset() copies the chosen examples; bad input is refused', () => {
  const { ds, pixels } = randomDataset(5, 2, 2, 3);
  const sub = ds.subset([3, 1]);
  assert.equal(sub.length, 2);
  assert.deepEqual(sub.labels.toArray(), [0, 1]);
  assert.deepEqual([...(sub.images.data() as Uint8Array)], [...pixels.subarray(3 * 12, 4 * 12), ...pixels.subarray(12, 24)]);
  assert.deepEqual(sub.classes, ['p', 'q', 'r']);
  sub.dispose();
  assert.ok(!ds.images.isDisposed, 'the parent keeps its own tensors');

  assert.throws(() => ds.batch([5]), /index 5 at position 0 is outside 0..4/);
  assert.throws(() => ds.batch([]), /no indices/);
  assert.throws(() => ds.batch([0, 1], [true]), /flip has 1 entries for 2 indices/);
  assert.throws(() => ds.subset([1.5]), /outside/);
  ds.dispose();

  assert.throws(() => ImageDataset.fromTensors(torch.zeros([2, 3, 4, 4]), torch.zeros([2], { dtype: 'int64' })), /uint8 \[N, 3, H, W\]/);
  assert.throws(() => ImageDataset.fromTensors(torch.zeros([2, 3, 4, 4], { dtype: 'uint8' }), torch.zeros([3], { dtype: 'int64' })), /int64 \[2\]/);
  assert.throws(() => ImageDataset.fromTensors(torch.zeros([2, 3, 4, 4], { dtype: 'uint8' }), torch.tensor([0, 2], { dtype: 'int64' }), ['a', 'b']), /labels must lie in 0..1/);
  const named = ImageDataset.fromTensors(torch.zeros([2, 3, 1, 1], { dtype: 'uint8' }), torch.tensor([0, 2], { dtype: 'int64' }));
  assert.deepEqual(named.classes, ['0', '1', '2']);
  named.dispose();
});
