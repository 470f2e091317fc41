// fashion-mnist from Debian's dataset-fashion-mnist: the four IDX files (gzip) of Zalando's
// Fashion-MNIST. Images are stored exactly as in the IDX files: 28x28, one grey channel, 0 =
// background (black), no resizing and no padding, so a PNG decodes to the original bytes.
// Class folders are "<label>-<name>" (0-t-shirt-top ... 9-ankle-boot): sorted, they keep the
// official label numbers.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { copyrightFile, debianPackage, packagePath } from './debian';
import type { BuildMeta, BuildOptions } from './types';
import { DatasetFolderWriter, DatasetSource } from './write-folder';

export const FASHION_MNIST_PACKAGE = 'dataset-fashion-mnist';
export const FASHION_MNIST_DIR = 'usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** An IDX array of unsigned bytes (the only element type the MNIST family uses). */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses IDX bytes (gzip-compressed or not). `what` names the source in errors. */
export function parseIdx(bytes: Buffer, what: string): IdxArray {
  const raw = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzip(bytes, what) : bytes;
  if (raw.length < 4 || raw[0] !== 0 || raw[1] !== 0) throw new Error(`${what}: not an IDX file (expected magic 0x0000TTNN)`);
  if (raw[2] !== 0x08) throw new Error(`${what}: IDX element type 0x${raw[2].toString(16)} is not supported (expected 0x08, unsigned byte)`);
  const ndim = raw[3];
  if (ndim < 1 || raw.length < 4 + 4 * ndim) throw new Error(`${what}: IDX header is truncated (${ndim} dimensions)`);
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(raw.readUInt32BE(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * ndim;
  if (raw.length !== start + count) {
    throw new Error(`${what}: IDX dimensions [${dims.join(', ')}] need ${count} data bytes, the file has ${raw.length - start}`);
  }
  return { dims, data: new Uint8Array(raw.buffer, raw.byteOffset + start, count) };
}

function gunzip(bytes: Buffer, what: string): Buffer {
  try {
    return zlib.gunzipSync(bytes);
  } catch (e) {
    throw new Error(`${what}: cannot gunzip (${(e as Error).message})`);
  }
}

/** Reads DIR/<stem> or DIR/<stem>.gz. */
export function readIdxFile(dir: string, stem: string): IdxArray {
  for (const name of [`${stem}.gz`, stem]) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return parseIdx(fs.readFileSync(file), file);
  }
  throw new Error(`${dir}: no ${stem}(.gz)`);
}

/** Images [N, H, W] and labels [N] of one split, checked against each other. */
export function readIdxSplit(dir: string, split: 'train' | 'test', classes: number): { images: IdxArray; labels: IdxArray } {
  const prefix = split === 'train' ? 'train' : 't10k';
  const images = readIdxFile(dir, `${prefix}-images-idx3-ubyte`);
  const labels = readIdxFile(dir, `${prefix}-labels-idx1-ubyte`);
  if (images.dims.length !== 3) throw new Error(`${dir}: ${prefix}-images has dimensions [${images.dims.join(', ')}], expected [N, H, W]`);
  if (labels.dims.length !== 1) throw new Error(`${dir}: ${prefix}-labels has dimensions [${labels.dims.join(', ')}], expected [N]`);
  if (images.dims[0] !== labels.dims[0]) throw new Error(`${dir}: ${images.dims[0]} ${prefix} images but ${labels.dims[0]} labels`);
  const bad = labels.data.findIndex((l) => l >= classes);
  if (bad >= 0) throw new Error(`${dir}: ${prefix}-labels[${bad}] = ${labels.data[bad]}, expected 0..${classes - 1}`);
  return { images, labels };
}

export function fashionClassFolder(label: number): string {
  return `${label}-${FASHION_MNIST_CLASSES[label]}`;
}

export async function buildFashionMnist(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const split = o.split ?? 'train';
  let dir: string;
  let source: DatasetSource;
  if (o.idxDir) {
    dir = path.resolve(o.idxDir);
    source = { kind: 'files', package: dir, version: 'unknown', licence: 'MIT', author: 'Zalando SE' };
  } else {
    const pkg = debianPackage(FASHION_MNIST_PACKAGE, { cacheDir: o.cacheDir, log: o.log });
    dir = packagePath(pkg, FASHION_MNIST_DIR);
    source = { kind: 'debian', package: pkg.name, version: pkg.version, licence: 'MIT', author: 'Zalando SE', url: 'https://github.com/zalandoresearch/fashion-mnist', copyrightFile: copyrightFile(pkg) };
  }
  const { images, labels } = readIdxSplit(dir, split, FASHION_MNIST_CLASSES.length);
  const [n, h, w] = images.dims;
  const folders = FASHION_MNIST_CLASSES.map((_, i) => fashionClassFolder(i));
  const digits = String(n - 1).length;
  for (let i = 0; i < n; i++) {
    if (writer.full(folders)) break;
    const label = labels.data[i];
    writer.add({
      cls: folders[label],
      name: `${split}-${String(i).padStart(digits, '0')}`,
      pixels: images.data.subarray(i * h * w, (i + 1) * h * w),
      width: w,
      height: h,
      channels: 1,
    });
  }
  source.images = writer.count;
  return {
    description: `Fashion-MNIST ${split} split (Zalando), ${w}x${h} grey as in the IDX files (0 = background); class folder = "<label>-<name>"`,
    sources: [source],
    attribution: `# fashion-mnist: attribution

Fashion-MNIST, ${split} split: Zalando article images by Han Xiao, Kashif Rasul and Roland Vollgraf,
https://github.com/zalandoresearch/fashion-mnist. Copyright (c) 2017 Zalando SE, MIT licence (Expat);
Debian packaging by Mo Zhou, also Expat. Taken from ${source.kind === 'files' ? `the IDX files in ${dir}` : `the Debian package ${FASHION_MNIST_PACKAGE} ${source.version}`}
and written unchanged as ${w}x${h} grey PNG files named by their index in
the IDX file; exact duplicate images were dropped (the first copy is kept).

The MIT licence's copyright and permission notice must accompany copies of these images: its full text
is Debian's copyright file, copied beside this file (LICENSE.*.txt) when the build read the Debian package.
`,
    background: null,
    notes: [`split = ${split}`, `image = IDX ${split === 'train' ? 'train' : 't10k'}-images[index] unchanged (file name = ${split}-<index>)`, 'class folders sort in label order'],
  };
}
