import { strict as assert } from 'node:assert';
import * as zlib from 'node:zlib';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { encodePng } from '../src/report/png';
import { imageGridPng } from '../src/report/grid';

/** Reads back what encodePng writes (filter 0 only), checking signature and chunk CRCs by re-encoding. */
function decode(png: Buffer): { width: number; height: number; colorType: number; pixels: Buffer } {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let pos = 8;
  let width = 0, height = 0, colorType = 0;
  const idat: Buffer[] = [];
  while (pos < png.length) {
    const len = png.readUInt32BE(pos);
    const type = png.toString('latin1', pos + 4, pos + 8);
    const body = png.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') { width = body.readUInt32BE(0); height = body.readUInt32BE(4); colorType = body[9]; }
    if (type === 'IDAT') idat.push(body);
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const channels = colorType === 0 ? 1 : colorType === 2 ? 3 : 4;
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    assert.equal(raw[y * (stride + 1)], 0);
    raw.copy(pixels, y * stride, y * (stride + 1) + 1, (y + 1) * (stride + 1));
  }
  return { width, height, colorType, pixels };
}

test('encodePng writes the pixels it was given', () => {
  const px = new Uint8Array([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]);
  const d = decode(encodePng(px, 2, 2, 3));
  assert.equal(d.width, 2);
  assert.equal(d.height, 2);
  assert.equal(d.colorType, 2);
  assert.deepEqual([...d.pixels], [...px]);
  assert.throws(() => encodePng(px, 3, 2, 3), /expected 18 bytes/);
});

test('imageGridPng maps [-1, 1] to 0..255 and lays images out row-major with padding', () => {
  const imgs = torch.tensor([-1, 1, 0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous();
  const d = decode(imageGridPng(imgs, 2, 1));
  assert.equal(d.width, 2 * 2 + 3);
  assert.equal(d.height, 2 * 2 + 3);
  const at = (x: number, y: number) => d.pixels[y * d.width + x];
  assert.equal(at(1, 1), 0);      // image 0 (value -1)
  assert.equal(at(4, 1), 255);    // image 1 (value 1), second column
  assert.equal(at(1, 4), 128);    // image 2 (value 0), second row: 127.5 + 0.5 truncated
  assert.equal(at(0, 0), 0);      // padding
});

test('imageGridPng can enlarge images by pixel repetition', () => {
  const img = torch.tensor([[-1, 1], [1, -1]]).reshape(1, 1, 2, 2);
  const d = decode(imageGridPng(img, 1, 0, 2));
  assert.equal(d.width, 4);
  assert.deepEqual([...d.pixels], [0, 0, 255, 255, 0, 0, 255, 255, 255, 255, 0, 0, 255, 255, 0, 0]);
});
