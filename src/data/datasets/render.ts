// Rasterising dataset sources with sharp (libvips + librsvg): vector icons and clip art to small
// RGB images on white. sharp, not resvg: resvg-js aborts the whole process on a few iconify icons
// (a Rust panic no try/catch can stop), librsvg just reports an error.
import sharp from 'sharp';

/** Colour every transparent pixel is flattened onto. */
export const WHITE = { r: 255, g: 255, b: 255 };

/** A pathological SVG must not stall a build: libvips gives up on one image after this long. */
const RENDER_TIMEOUT_S = 20;

export interface Rgb {
  pixels: Uint8Array;
  width: number;
  height: number;
}

async function toRgb(pipeline: sharp.Sharp, what: string): Promise<Rgb> {
  const { data, info } = await pipeline
    .flatten({ background: WHITE })
    .toColourspace('srgb')
    .removeAlpha()
    .timeout({ seconds: RENDER_TIMEOUT_S })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new Error(`${what}: expected 8-bit RGB after rendering, got ${info.channels} channels`);
  }
  return { pixels: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/**
 * Renders an SVG document whose width and height attributes are already `size` (as built by
 * iconify.ts) to size x size RGB on white. librsvg draws straight at the final size: no
 * resampling, so edges that fall on pixel boundaries stay exact.
 */
export async function renderSizedSvg(svg: string, size: number, what: string): Promise<Rgb> {
  const out = await toRgb(sharp(Buffer.from(svg, 'utf8'), { failOn: 'error' }), what);
  if (out.width !== size || out.height !== size) {
    throw new Error(`${what}: rendered ${out.width}x${out.height}, expected ${size}x${size}`);
  }
  return out;
}

// CSS pixels per unit of an SVG length as [times, divided by] (px and bare numbers are user
// units = px); multiplying first keeps round sizes round (96pt is exactly 128px).
const PX_PER_UNIT: Record<string, [number, number]> = { '': [1, 1], px: [1, 1], pt: [96, 72], pc: [16, 1], mm: [96, 25.4], cm: [96, 2.54], in: [96, 1] };

/** An SVG length in px, or null for %, em and anything unparsable. */
export function svgLengthPx(value: string | undefined): number | null {
  const m = value === undefined ? null : /^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$/.exec(value);
  if (!m || !(m[2] in PX_PER_UNIT)) return null;
  const [times, by] = PX_PER_UNIT[m[2]];
  const px = (Number(m[1]) * times) / by;
  return px > 0 && Number.isFinite(px) ? px : null;
}

/**
 * Rewrites an SVG document's root element so it renders at a width x height in pixels that fits
 * in box x box with the drawing's aspect ratio: the view box is kept, or made from width/height
 * when absent (then the user space is the document's px space, as SVG defines). Returns null when
 * the size cannot be known (percent sizes and no view box). Without this, documents sized in
 * pt/mm and lacking a view box (most of openclipart) render blank when asked for a small size:
 * librsvg rescales the canvas but not the user space.
 */
export function fitSvgDocument(text: string, box: number): { svg: string; width: number; height: number } | null {
  const tag = /<(?:[A-Za-z_][\w.-]*:)?svg\b[^>]*>/.exec(text);
  if (!tag) return null;
  const attrs = new Map<string, string>();
  for (const m of tag[0].matchAll(/\s([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs.set(m[1], m[2] ?? m[3]);
  let view = (attrs.get('viewBox') ?? '').trim().split(/[\s,]+/).map(Number);
  if (view.length !== 4 || !view.every(Number.isFinite) || view[2] <= 0 || view[3] <= 0) {
    const w = svgLengthPx(attrs.get('width'));
    const h = svgLengthPx(attrs.get('height'));
    if (w === null || h === null) return null;
    view = [0, 0, w, h];
  }
  const scale = box / Math.max(view[2], view[3]);
  const width = Math.min(box, Math.max(1, Math.round(view[2] * scale)));
  const height = Math.min(box, Math.max(1, Math.round(view[3] * scale)));
  const stripped = tag[0].replace(/\s(?:width|height|viewBox)\s*=\s*(?:"[^"]*"|'[^']*')/g, '');
  const open = /^<[^\s>/]+/.exec(stripped)![0];
  const rebuilt = `${open} width="${width}" height="${height}" viewBox="${view.join(' ')}"${stripped.slice(open.length)}`;
  return { svg: text.slice(0, tag.index) + rebuilt + text.slice(tag.index + tag[0].length), width, height };
}

/** How much larger than the target a drawing is rendered before trimming and reducing it. */
const TRIM_SUPERSAMPLE = 4;

/**
 * Renders any SVG (or raster) file to size x size RGB on white showing just the drawing: it is
 * rendered at TRIM_SUPERSAMPLE x size (straight at that size for SVGs, see fitSvgDocument), the
 * white margin around it is trimmed (clip-art documents are often a whole page with a small
 * drawing on it), and what is left is scaled to fit, centred and padded with white. Returns
 * null for a drawing that renders to plain white.
 */
export async function renderTrimmed(bytes: Buffer, size: number, what: string): Promise<Rgb | null> {
  const big = size * TRIM_SUPERSAMPLE;
  const fitted = bytes.subarray(0, 2).toString('latin1') === '\x1f\x8b' ? null : fitSvgDocument(bytes.toString('utf8'), big);
  const first = fitted
    ? sharp(Buffer.from(fitted.svg, 'utf8'), { failOn: 'error' })
    : sharp(bytes, { failOn: 'error', limitInputPixels: false }).resize(big, big, { fit: 'inside' });
  const page = await toRgb(first, what);
  if (isBlankWhite(page.pixels)) return null;
  const pipeline = sharp(page.pixels, { raw: { width: page.width, height: page.height, channels: 3 } })
    .trim({ background: WHITE, threshold: 0 })
    .resize(size, size, { fit: 'contain', background: WHITE, kernel: 'lanczos3' });
  const out = await toRgb(pipeline, what);
  if (out.width !== size || out.height !== size) throw new Error(`${what}: rendered ${out.width}x${out.height}, expected ${size}x${size}`);
  return out;
}

/** True if every byte is 255: a drawing that rendered to nothing (e.g. it only links a missing image). */
export function isBlankWhite(pixels: Uint8Array): boolean {
  for (let i = 0; i < pixels.length; i++) if (pixels[i] !== 255) return false;
  return true;
}

/** Decodes a raster image to RGB at its own size, alpha flattened onto white. */
export async function decodeFlat(bytes: Buffer, what: string): Promise<Rgb> {
  return toRgb(sharp(bytes, { failOn: 'error' }), what);
}

/**
 * Runs `work` over items with up to `concurrency` in flight (sharp runs them on libuv's
 * threads) but hands results to `deliver` strictly in item order, so dedup keeps the same
 * first copy on every run.
 */
export async function mapInOrder<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
  deliver: (result: R, item: T, index: number) => void,
): Promise<void> {
  const window = Math.max(1, concurrency) * 4;
  for (let start = 0; start < items.length; start += window) {
    const slice = items.slice(start, start + window);
    const results: R[] = new Array(slice.length);
    let next = 0;
    const runners = Array.from({ length: Math.min(concurrency, slice.length) }, async () => {
      while (next < slice.length) {
        const i = next++;
        results[i] = await work(slice[i], start + i);
      }
    });
    await Promise.all(runners);
    slice.forEach((item, i) => deliver(results[i], item, start + i));
  }
}
