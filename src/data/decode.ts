// Image files -> fixed-size RGB pixels, as the official DiT training loads them: decode, then
// ADM's center_crop_arr (guided-diffusion). sharp (libvips) decodes PNG/JPEG/WebP/GIF/TIFF/SVG,
// a small reader below handles BMP (libvips as shipped with sharp has none), and the resampling
// is done here in PIL's way (separable, kernel widened by the scale, rounding between passes),
// so the output matches PIL's center_crop_arr to within one grey level, not just in geometry.
//
// Differences from the reference on purpose: transparent pixels are flattened onto a background
// (white by default; PIL's convert('RGB') keeps whatever colour the transparent pixels hold,
// usually black, which turns icons into black squares), SVGs are rasterised at the size the crop
// needs, and embedded ICC profiles are applied by libvips (PIL ignores them).
import * as fs from 'fs';
import sharp from 'sharp';

export interface DecodeOptions {
  /** Output side in pixels: the result is resolution x resolution RGB. */
  resolution: number;
  /** 'center' (default): ADM center_crop_arr. 'resize': plain bicubic resize to resolution x resolution (aspect not kept). */
  crop?: 'center' | 'resize';
  /** Colour that alpha is flattened onto, 0..255 per channel (default white). */
  background?: [number, number, number];
}

/** Decodes an image file (or its bytes) to RGB, height x width x 3, uint8, resolution x resolution. Errors name the file. */
export async function decodeImage(src: string | Buffer, o: DecodeOptions): Promise<Uint8Array> {
  const name = typeof src === 'string' ? src : '<buffer>';
  const { resolution, crop, background } = checkOptions(o);
  let image: RgbImage;
  try {
    const bytes = typeof src === 'string' ? await fs.promises.readFile(src) : src;
    image = await decodeToRgb(bytes, resolution, background);
  } catch (e) {
    throw new Error(`decodeImage: cannot decode ${name}: ${(e as Error).message}`, { cause: e });
  }
  return crop === 'resize'
    ? resizeRgb(image, resolution, resolution, BICUBIC).data
    : centerCropArr(image, resolution);
}

function checkOptions(o: DecodeOptions): Required<DecodeOptions> {
  if (!Number.isInteger(o.resolution) || o.resolution < 1) {
    throw new RangeError(`decodeImage: resolution must be a positive integer, got ${o.resolution}`);
  }
  const crop = o.crop ?? 'center';
  if (crop !== 'center' && crop !== 'resize') throw new RangeError(`decodeImage: crop must be 'center' or 'resize', got ${String(crop)}`);
  const background = o.background ?? [255, 255, 255];
  if (background.length !== 3 || background.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
    throw new RangeError(`decodeImage: background must be three integers in 0..255, got [${background.join(', ')}]`);
  }
  return { resolution: o.resolution, crop, background };
}

/** Interleaved 8-bit RGB, row by row, top first. */
export interface RgbImage { data: Uint8Array; width: number; height: number }

async function decodeToRgb(bytes: Buffer, resolution: number, background: [number, number, number]): Promise<RgbImage> {
  let pipeline: sharp.Sharp;
  if (bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d) {
    const bmp = decodeBmp(bytes);
    pipeline = sharp(bmp.rgba, { raw: { width: bmp.width, height: bmp.height, channels: 4 } });
  } else {
    const meta = await sharp(bytes, { failOn: 'error' }).metadata();
    // Vector input: render at the size the crop needs instead of upsampling a small raster.
    let density: number | undefined;
    if (meta.format === 'svg' && meta.width && meta.height && Math.min(meta.width, meta.height) < resolution) {
      density = Math.min(100000, (72 * resolution) / Math.min(meta.width, meta.height));
    }
    pipeline = sharp(bytes, { failOn: 'error', density });
  }
  const [r, g, b] = background;
  const { data, info } = await pipeline
    .flatten({ background: { r, g, b } })
    .toColourspace('srgb')
    .removeAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new Error(`expected 3 channels of 8-bit RGB after decoding, got ${info.channels} channels (${data.length} bytes for ${info.width}x${info.height})`);
  }
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

// ---- ADM center crop ----

/**
 * guided-diffusion's center_crop_arr: while the short side is at least 2 * resolution, halve
 * both sides (floor) with a box filter; then scale bicubically so the short side is resolution
 * (the other side rounded half to even, as Python's round); then cut the centre square.
 */
export function centerCropArr(image: RgbImage, resolution: number): Uint8Array {
  let img = image;
  while (Math.min(img.width, img.height) >= 2 * resolution) {
    img = resizeRgb(img, Math.floor(img.width / 2), Math.floor(img.height / 2), BOX);
  }
  const scale = resolution / Math.min(img.width, img.height);
  img = resizeRgb(img, roundHalfEven(img.width * scale), roundHalfEven(img.height * scale), BICUBIC);
  const top = Math.floor((img.height - resolution) / 2);
  const left = Math.floor((img.width - resolution) / 2);
  const out = new Uint8Array(resolution * resolution * 3);
  for (let y = 0; y < resolution; y++) {
    const from = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(from, from + resolution * 3), y * resolution * 3);
  }
  return out;
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---- PIL-style resampling ----

interface Filter { support: number; weight(x: number): number }

const BOX: Filter = { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) };

/** Keys' cubic with a = -0.5, as PIL's BICUBIC. */
const BICUBIC: Filter = {
  support: 2,
  weight: (x) => {
    const a = -0.5;
    const t = Math.abs(x);
    if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
    return 0;
  },
};

interface Taps { first: Int32Array; count: Int32Array; weights: Float64Array; stride: number }

/** Which input samples feed each output sample, and with what weights (normalised to sum 1). */
function taps(inSize: number, outSize: number, filter: Filter): Taps {
  const scale = inSize / outSize;
  const widen = Math.max(scale, 1); // downscaling widens the kernel: antialiasing
  const support = filter.support * widen;
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * stride);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    for (let i = lo; i < hi; i++) {
      const w = filter.weight((i - center + 0.5) / widen);
      weights[o * stride + i - lo] = w;
      total += w;
    }
    if (total !== 0) for (let i = lo; i < hi; i++) weights[o * stride + i - lo] /= total;
    first[o] = lo;
    count[o] = hi - lo;
  }
  return { first, count, weights, stride };
}

function toByte(v: number): number {
  const r = Math.floor(v + 0.5);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/** Resizes horizontally, then vertically, rounding to 8 bits in between (as PIL does). Same size: a copy. */
export function resizeRgb(img: RgbImage, width: number, height: number, filter: Filter): RgbImage {
  if (width < 1 || height < 1) throw new RangeError(`resize: target ${width}x${height} is empty`);
  let { data, width: w, height: h } = img;
  if (width !== w) {
    const t = taps(w, width, filter);
    const out = new Uint8Array(width * h * 3);
    for (let y = 0; y < h; y++) {
      const row = y * w * 3;
      for (let x = 0; x < width; x++) {
        let r = 0, g = 0, b = 0;
        const base = x * t.stride;
        for (let k = 0; k < t.count[x]; k++) {
          const wt = t.weights[base + k];
          const p = row + (t.first[x] + k) * 3;
          r += data[p] * wt; g += data[p + 1] * wt; b += data[p + 2] * wt;
        }
        const q = (y * width + x) * 3;
        out[q] = toByte(r); out[q + 1] = toByte(g); out[q + 2] = toByte(b);
      }
    }
    data = out;
    w = width;
  }
  if (height !== h) {
    const t = taps(h, height, filter);
    const out = new Uint8Array(w * height * 3);
    const rowLen = w * 3;
    for (let y = 0; y < height; y++) {
      const base = y * t.stride;
      for (let c = 0; c < rowLen; c++) {
        let s = 0;
        for (let k = 0; k < t.count[y]; k++) s += data[(t.first[y] + k) * rowLen + c] * t.weights[base + k];
        out[y * rowLen + c] = toByte(s);
      }
    }
    data = out;
    h = height;
  }
  return { data: data === img.data ? data.slice() : data, width: w, height: h };
}

// ---- BMP ----

const MAX_PIXELS = 0x3fff * 0x3fff; // sharp's default input limit

/** Uncompressed Windows bitmaps: 1/4/8-bit palette, 16/24/32-bit (BI_RGB or BI_BITFIELDS). To RGBA. */
export function decodeBmp(buf: Buffer): { rgba: Uint8Array; width: number; height: number } {
  if (buf.length < 26) throw new Error('BMP: file shorter than its headers');
  const dataOffset = buf.readUInt32LE(10);
  const headerSize = buf.readUInt32LE(14);
  let width: number, rawHeight: number, bpp: number, compression = 0, paletteEntry = 4, colorsUsed = 0;
  if (headerSize === 12) {
    width = buf.readUInt16LE(18); rawHeight = buf.readInt16LE(20); bpp = buf.readUInt16LE(24); paletteEntry = 3;
  } else if (headerSize >= 40 && buf.length >= 14 + 40) {
    width = buf.readInt32LE(18); rawHeight = buf.readInt32LE(22); bpp = buf.readUInt16LE(28);
    compression = buf.readUInt32LE(30); colorsUsed = buf.readUInt32LE(46);
  } else {
    throw new Error(`BMP: unsupported header size ${headerSize}`);
  }
  const height = Math.abs(rawHeight);
  const topDown = rawHeight < 0;
  if (width < 1 || height < 1 || width * height > MAX_PIXELS) throw new Error(`BMP: bad size ${width}x${rawHeight}`);
  // BI_RGB = 0, BI_BITFIELDS = 3, BI_ALPHABITFIELDS = 6; RLE and embedded JPEG/PNG are not read.
  if (compression !== 0 && compression !== 3 && compression !== 6) {
    throw new Error(`BMP: compression ${compression} is not supported (only uncompressed bitmaps)`);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) throw new Error(`BMP: ${bpp} bits per pixel is not supported`);

  let masks: number[] | null = null; // r, g, b, a
  if (bpp === 16 || bpp === 32) {
    if (compression === 0) {
      masks = bpp === 16 ? [0x7c00, 0x3e0, 0x1f, 0] : null; // 32-bit BI_RGB is BGRX: the fourth byte is not alpha
    } else {
      const at = headerSize >= 52 ? 54 : 14 + headerSize; // inside a V2+ header, else right after it
      const n = compression === 6 || headerSize >= 56 ? 4 : 3;
      if (buf.length < at + 4 * n) throw new Error('BMP: truncated colour masks');
      masks = [0, 1, 2, 3].map((i) => (i < n ? buf.readUInt32LE(at + 4 * i) : 0));
    }
  } else if (compression !== 0) {
    throw new Error(`BMP: bit fields need 16 or 32 bits per pixel, got ${bpp}`);
  }

  let palette: Uint8Array | null = null;
  if (bpp <= 8) {
    const n = colorsUsed || 1 << bpp;
    const at = 14 + headerSize;
    if (n > 1 << bpp || buf.length < at + n * paletteEntry) throw new Error('BMP: truncated or oversized palette');
    palette = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      palette[i * 3] = buf[at + i * paletteEntry + 2];
      palette[i * 3 + 1] = buf[at + i * paletteEntry + 1];
      palette[i * 3 + 2] = buf[at + i * paletteEntry];
    }
  }

  const rowBytes = Math.floor((bpp * width + 31) / 32) * 4;
  if (dataOffset + rowBytes * height > buf.length) throw new Error('BMP: pixel data is truncated');
  const field = masks?.map(maskReader) ?? null;
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const q = (y * width + x) * 4;
      rgba[q + 3] = 255;
      if (palette) {
        const bit = x * bpp;
        const index = (buf[row + (bit >> 3)] >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        if (index * 3 >= palette.length) throw new Error(`BMP: palette index ${index} out of range`);
        rgba[q] = palette[index * 3]; rgba[q + 1] = palette[index * 3 + 1]; rgba[q + 2] = palette[index * 3 + 2];
      } else if (field) {
        const v = bpp === 16 ? buf.readUInt16LE(row + x * 2) : buf.readUInt32LE(row + x * 4);
        rgba[q] = field[0](v); rgba[q + 1] = field[1](v); rgba[q + 2] = field[2](v);
        if (masks![3]) rgba[q + 3] = field[3](v);
      } else {
        const p = row + x * (bpp / 8); // 24-bit BGR, or 32-bit BGRX
        rgba[q] = buf[p + 2]; rgba[q + 1] = buf[p + 1]; rgba[q + 2] = buf[p];
      }
    }
  }
  return { rgba, width, height };
}

/** Reads one colour mask out of a pixel word, scaled to 0..255. */
function maskReader(mask: number): (v: number) => number {
  if (mask === 0) return () => 0;
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  const max = mask >>> shift;
  return (v) => Math.round((((v & mask) >>> shift) * 255) / max);
}
