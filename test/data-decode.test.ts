// decodeImage: ADM's center_crop_arr against PIL's own output (test/fixtures/data, made by
// make_center_crop_ref.py), and decoding of known images in each format: solid colours, a crop
// that must land on a distinct centre, alpha flattened onto white, grey, JPEG, SVG, BMP.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { decodeImage } from '../src/data/decode';
import { encodePng } from '../src/report/png';

const FIXTURES = path.join(__dirname, '..', '..', 'test', 'fixtures', 'data');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-decode-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** width x height RGB(A) pixels from a function of (x, y). */
function paint(width: number, height: number, channels: number, colour: (x: number, y: number) => number[]): Uint8Array {
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out.set(colour(x, y), (y * width + x) * channels);
  return out;
}

function writePng(name: string, width: number, height: number, channels: 1 | 3 | 4, pixels: Uint8Array): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, encodePng(pixels, width, height, channels));
  return file;
}

function pixelAt(rgb: Uint8Array, res: number, x: number, y: number): number[] {
  return [...rgb.subarray((y * res + x) * 3, (y * res + x) * 3 + 3)];
}

function everyPixel(rgb: Uint8Array, res: number, check: (p: number[], x: number, y: number) => void): void {
  for (let y = 0; y < res; y++) for (let x = 0; x < res; x++) check(pixelAt(rgb, res, x, y), x, y);
}

test('center crop and bicubic resize match PIL (center_crop_arr) on noise images', async () => {
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'center-crop-ref.json'), 'utf8')) as {
    cases: { file: string; resolution: number; crop: 'center' | 'resize'; rgb_base64: string }[];
  };
  assert.equal(ref.cases.length, 8);
  for (const c of ref.cases) {
    const expected = Buffer.from(c.rgb_base64, 'base64');
    const got = await decodeImage(path.join(FIXTURES, c.file), { resolution: c.resolution, crop: c.crop });
    assert.equal(got.length, c.resolution * c.resolution * 3);
    // PIL resamples in 22-bit fixed point and we in float64: a value sitting on a rounding edge may differ by one.
    let differing = 0;
    for (let i = 0; i < expected.length; i++) {
      const d = Math.abs(expected[i] - got[i]);
      assert.ok(d <= 1, `${c.file} ${c.crop} ${c.resolution}: value ${i} is ${got[i]}, PIL gives ${expected[i]}`);
      if (d) differing++;
    }
    assert.ok(differing <= expected.length / 100, `${c.file}: ${differing} values differ from PIL by one`);
  }
});

test('a solid colour stays exactly that colour at any size', async () => {
  const file = writePng('solid.png', 40, 23, 3, paint(40, 23, 3, () => [12, 200, 99]));
  for (const crop of ['center', 'resize'] as const) {
    for (const res of [4, 8, 30]) {
      const rgb = await decodeImage(file, { resolution: res, crop });
      everyPixel(rgb, res, (p) => assert.deepEqual(p, [12, 200, 99]));
    }
  }
  const fromBuffer = await decodeImage(fs.readFileSync(file), { resolution: 5 });
  everyPixel(fromBuffer, 5, (p) => assert.deepEqual(p, [12, 200, 99]));
});

test('center crop of a 64x32 image keeps only its centre (box halving, then the middle square)', async () => {
  // Columns 0-15 red, 16-47 green, 48-63 blue; rows 0-15 dark, 16-31 light. At 16 pixels:
  // halve to 32x16 (pairs never straddle an edge), then the centre columns 8-23 = all green.
  const file = writePng('bands.png', 64, 32, 3, paint(64, 32, 3, (x, y) => {
    const v = y < 16 ? 100 : 200;
    return x < 16 ? [v, 0, 0] : x < 48 ? [0, v, 0] : [0, 0, v];
  }));
  const rgb = await decodeImage(file, { resolution: 16 });
  everyPixel(rgb, 16, (p, _x, y) => assert.deepEqual(p, [0, y < 8 ? 100 : 200, 0]));
  // 'resize' squeezes the whole width in: red on the left edge, blue on the right.
  const squeezed = await decodeImage(file, { resolution: 16, crop: 'resize' });
  assert.deepEqual(pixelAt(squeezed, 16, 0, 0), [100, 0, 0]);
  assert.deepEqual(pixelAt(squeezed, 16, 15, 15), [0, 0, 200]);
  assert.deepEqual(pixelAt(squeezed, 16, 8, 15), [0, 200, 0]);
});

test('transparent pixels come out on white (or the given background), opaque ones unchanged', async () => {
  // Left half opaque blue, right half fully transparent red, bottom row half-transparent black.
  const file = writePng('icon.png', 8, 8, 4, paint(8, 8, 4, (x, y) => (y === 7 ? [0, 0, 0, 128] : x < 4 ? [0, 0, 255, 255] : [255, 0, 0, 0])));
  const rgb = await decodeImage(file, { resolution: 8 });
  const half = Math.round(255 * (1 - 128 / 255)); // black at alpha 128 over white
  everyPixel(rgb, 8, (p, x, y) => {
    if (y === 7) p.forEach((v) => assert.ok(Math.abs(v - half) <= 1, `half-transparent pixel ${p}`));
    else assert.deepEqual(p, x < 4 ? [0, 0, 255] : [255, 255, 255]);
  });
  const onGrey = await decodeImage(file, { resolution: 8, background: [10, 20, 30] });
  assert.deepEqual(pixelAt(onGrey, 8, 6, 2), [10, 20, 30]);
  assert.deepEqual(pixelAt(onGrey, 8, 1, 2), [0, 0, 255]);
});

test('grey PNGs become three equal channels; JPEGs decode near their colour', async () => {
  const grey = writePng('grey.png', 4, 4, 1, paint(4, 4, 1, (x) => [x * 60]));
  const rgb = await decodeImage(grey, { resolution: 4 });
  everyPixel(rgb, 4, (p, x) => assert.deepEqual(p, [x * 60, x * 60, x * 60]));

  const jpeg = path.join(tmp, 'photo.JPG');
  await sharp(Buffer.from(paint(32, 32, 3, () => [200, 60, 30])), { raw: { width: 32, height: 32, channels: 3 } }).jpeg({ quality: 95 }).toFile(jpeg);
  const decoded = await decodeImage(jpeg, { resolution: 8 });
  everyPixel(decoded, 8, (p) => [200, 60, 30].forEach((v, c) => assert.ok(Math.abs(p[c] - v) <= 3, `JPEG pixel ${p}`)));
});

test('SVGs are rasterised at the needed size, transparent parts on white', async () => {
  // An 8x8 icon, left half red: at 16 pixels it is rendered at 16x16, so columns 0-7 are exactly red.
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8" viewBox="0 0 8 8"><rect x="0" y="0" width="4" height="8" fill="#ff0000"/></svg>';
  const file = path.join(tmp, 'icon.svg');
  fs.writeFileSync(file, svg);
  const rgb = await decodeImage(file, { resolution: 16 });
  everyPixel(rgb, 16, (p, x) => assert.deepEqual(p, x < 8 ? [255, 0, 0] : [255, 255, 255]));
});

/** A BMP written by hand from the format's spec: 14-byte file header, 40-byte info header, optional palette, padded bottom-up rows. */
function bmp(width: number, height: number, bpp: 8 | 24 | 32, row: (y: number) => number[], palette: number[][] = []): Buffer {
  const stride = Math.ceil((width * bpp) / 32) * 4;
  const offset = 14 + 40 + palette.length * 4;
  const buf = Buffer.alloc(offset + stride * height);
  buf.write('BM', 0, 'latin1');
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(offset, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(width, 18);
  buf.writeInt32LE(height, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(bpp, 28);
  buf.writeUInt32LE(palette.length, 46);
  palette.forEach(([r, g, b], i) => buf.set([b, g, r, 0], 54 + i * 4));
  for (let y = 0; y < height; y++) buf.set(row(y), offset + (height - 1 - y) * stride); // stored bottom row first
  return buf;
}

test('BMP: 24-bit with row padding, 8-bit palette and 32-bit BGRX', async () => {
  // 3x3, top row red, middle green, bottom blue (BGR bytes); each 9-byte row is padded to 12.
  const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
  const bgr = (c: number[]) => [c[2], c[1], c[0]];
  const b24 = bmp(3, 3, 24, (y) => [...bgr(colours[y]), ...bgr(colours[y]), ...bgr(colours[y])]);
  const rgb24 = await decodeImage(b24, { resolution: 3 });
  everyPixel(rgb24, 3, (p, _x, y) => assert.deepEqual(p, colours[y]));

  const b8 = bmp(3, 3, 8, (y) => [y, (y + 1) % 3, (y + 2) % 3], colours);
  const file = path.join(tmp, 'palette.Bmp');
  fs.writeFileSync(file, b8);
  const rgb8 = await decodeImage(file, { resolution: 3 });
  everyPixel(rgb8, 3, (p, x, y) => assert.deepEqual(p, colours[(x + y) % 3]));

  // The fourth byte of 32-bit BI_RGB is padding, not alpha (0 here must not make it transparent).
  const b32 = bmp(3, 3, 32, (y) => [0, 0, 0, 0, ...bgr(colours[y]), 0, 7, 7, 7, 0]);
  const rgb32 = await decodeImage(b32, { resolution: 3 });
  everyPixel(rgb32, 3, (p, x, y) => assert.deepEqual(p, x === 0 ? [0, 0, 0] : x === 1 ? colours[y] : [7, 7, 7]));

  const rle = Buffer.from(b8);
  rle.writeUInt32LE(1, 30);
  await assert.rejects(decodeImage(rle, { resolution: 3 }), /compression 1 is not supported/);
});

test('corrupt or missing files: the error names the file', async () => {
  const garbage = path.join(tmp, 'garbage.png');
  fs.writeFileSync(garbage, Buffer.from('this is not an image at all'));
  await assert.rejects(decodeImage(garbage, { resolution: 8 }), (e: Error) => e.message.includes(garbage));

  const good = encodePng(paint(16, 16, 3, (x, y) => [x * 16, y * 16, 0]), 16, 16, 3);
  const truncated = path.join(tmp, 'truncated.png');
  fs.writeFileSync(truncated, good.subarray(0, good.length - 40));
  await assert.rejects(decodeImage(truncated, { resolution: 8 }), (e: Error) => e.message.includes(truncated));

  const missing = path.join(tmp, 'nope.png');
  await assert.rejects(decodeImage(missing, { resolution: 8 }), (e: Error) => e.message.includes(missing));

  const shortBmp = path.join(tmp, 'short.bmp');
  fs.writeFileSync(shortBmp, bmp(3, 3, 24, () => [1, 2, 3]).subarray(0, 60));
  await assert.rejects(decodeImage(shortBmp, { resolution: 3 }), (e: Error) => e.message.includes(shortBmp) && /truncated/.test(e.message));
});

test('bad options are refused', async () => {
  const file = writePng('opt.png', 4, 4, 3, paint(4, 4, 3, () => [0, 0, 0]));
  await assert.rejects(decodeImage(file, { resolution: 0 }), /resolution must be a positive integer/);
  await assert.rejects(decodeImage(file, { resolution: 4, crop: 'fill' as 'center' }), /crop must be/);
  await assert.rejects(decodeImage(file, { resolution: 4, background: [0, 0, 256] }), /background/);
});
