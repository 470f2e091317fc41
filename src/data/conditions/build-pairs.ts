// Builds a condition-pair folder from a class-subfolder image folder: every image is decoded and
// center-cropped as training loads it (decode.ts), its condition extracted (index.ts), and both
// written as PNGs under OUT/images and OUT/conditions with the same <class>/<name>.png, plus
// manifest.json. The folder is built as OUT.tmp-PID and renamed into place at the end, so a
// failed or killed build never leaves a half folder at OUT.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { fromTypedArray } from '../../torch/creation';
import { scope } from '../../torch/scope';
import { Device } from '../../torch/tensor';
import { encodePng } from '../../report/png';
import { decodeBmp, decodeImage } from '../decode';
import { pixelHash } from '../datasets/write-folder';
import { sha256Bytes } from '../hash';
import { scanImageFolder } from '../image-folder';
import { checkConditionKind, ConditionKind, conditionChannels, ConditionOptions, extractCondition, resolveConditionOptions } from './index';
import { ConditionPairsManifest, CONDITIONS_DIR, IMAGES_DIR, PAIRS_FORMAT, PAIRS_MANIFEST } from './pairs-manifest';

export interface BuildPairsOptions {
  kind: ConditionKind;
  /** Class-subfolder image folder (root/<class>/.../<image>). */
  input: string;
  out: string;
  /** Side of the center crop (default: the shorter side of the first image). */
  resolution?: number;
  options?: ConditionOptions;
  /** Images decoded and extracted at once (default 32). */
  batchSize?: number;
  device?: Device;
  /** Recorded in the manifest. */
  command?: string;
  log?: (msg: string) => void;
}

/** Shorter side of an image file, for the default resolution. */
async function shorterSide(file: string): Promise<number> {
  const bytes = await fs.promises.readFile(file);
  try {
    if (bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d) {
      const bmp = decodeBmp(bytes);
      return Math.min(bmp.width, bmp.height);
    }
    const meta = await sharp(bytes).metadata();
    if (!meta.width || !meta.height) throw new Error('no size in its header');
    return Math.min(meta.width, meta.height);
  } catch (e) {
    throw new Error(`cannot read the size of ${file} (${(e as Error).message}); pass --resolution`);
  }
}

/** <path under the class folder> with '/' as '__' and the extension replaced by .png, unique in its class. */
function pairName(classDir: string, file: string, used: Set<string>): string {
  const rel = path.relative(classDir, file).split(path.sep).join('__');
  const base = rel.slice(0, rel.length - path.extname(rel).length);
  let name = `${base}.png`;
  for (let i = 2; used.has(name); i++) name = `${base}-${i}.png`;
  used.add(name);
  return name;
}

/** OUT may be replaced only if it is absent, empty, or an earlier pair folder (holds manifest.json). */
function checkReplaceable(out: string): void {
  if (!fs.existsSync(out)) return;
  if (!fs.statSync(out).isDirectory()) throw new Error(`${out} exists and is not a folder; choose another --out`);
  const entries = fs.readdirSync(out);
  if (entries.length > 0 && !entries.includes(PAIRS_MANIFEST)) {
    throw new Error(`${out} is a non-empty folder that is not a condition-pair folder (no ${PAIRS_MANIFEST}); refusing to replace it, choose another --out`);
  }
}

/** Interleaved HWC bytes of image i of a uint8 [N, C, H, W] array. */
function hwc(chw: Uint8Array, i: number, channels: number, plane: number): Uint8Array {
  const out = new Uint8Array(channels * plane);
  const base = i * channels * plane;
  for (let c = 0; c < channels; c++) for (let p = 0; p < plane; p++) out[p * channels + c] = chw[base + c * plane + p];
  return out;
}

export async function buildConditionPairs(o: BuildPairsOptions): Promise<ConditionPairsManifest> {
  const kind = checkConditionKind(o.kind);
  const index = scanImageFolder(o.input);
  const resolution = o.resolution ?? (await shorterSide(index.items[0].file));
  if (!Number.isInteger(resolution) || resolution < 1) throw new RangeError(`condition pairs: resolution must be a positive integer, got ${resolution}`);
  const batchSize = o.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`condition pairs: batch size must be a positive integer, got ${batchSize}`);
  const options = resolveConditionOptions(kind, o.options, resolution);
  const channels = conditionChannels(kind);
  const plane = resolution * resolution;
  const log = o.log ?? (() => undefined);
  checkReplaceable(o.out);
  const tmp = `${o.out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    const names = index.classes.map(() => new Set<string>());
    const sourceLines: string[] = [];
    const imageLines: string[] = [];
    const conditionLines: string[] = [];
    const classes: Record<string, number> = Object.fromEntries(index.classes.map((c) => [c, 0]));
    for (const c of index.classes) {
      fs.mkdirSync(path.join(tmp, IMAGES_DIR, c), { recursive: true });
      fs.mkdirSync(path.join(tmp, CONDITIONS_DIR, c), { recursive: true });
    }
    for (let start = 0; start < index.items.length; start += batchSize) {
      const items = index.items.slice(start, start + batchSize);
      const decoded = await Promise.all(items.map(async (it) => {
        const bytes = await fs.promises.readFile(it.file);
        return { bytes, rgb: await decodeImage(bytes, { resolution }).catch((e: Error) => { throw new Error(`condition pairs: cannot decode ${it.file}: ${e.message}`, { cause: e }); }) };
      }));
      const chw = new Uint8Array(items.length * 3 * plane);
      decoded.forEach(({ rgb }, i) => {
        for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) chw[(i * 3 + c) * plane + p] = rgb[p * 3 + c];
      });
      const cond = scope(() => {
        // float64, so grayscale rounds to PIL's byte exactly; [-1, 1] -> bytes rounding half up
        const x = fromTypedArray(chw, [items.length, 3, resolution, resolution]).to({ dtype: 'float64', device: o.device ?? 'cpu' }).div(127.5).sub(1);
        return extractCondition(kind, x, o.options).add(1).mul(127.5).add(0.5).floor().clamp(0, 255).to({ dtype: 'uint8', device: 'cpu' }).data() as Uint8Array;
      });
      items.forEach((it, i) => {
        const cls = index.classes[it.label];
        const name = pairName(path.join(index.root, cls), it.file, names[it.label]);
        const rel = `${cls}/${name}`;
        const image = { pixels: decoded[i].rgb, width: resolution, height: resolution, channels: 3 as const };
        const condition = { pixels: hwc(cond, i, channels, plane), width: resolution, height: resolution, channels: channels as 1 | 3 };
        fs.writeFileSync(path.join(tmp, IMAGES_DIR, cls, name), encodePng(image.pixels, resolution, resolution, 3));
        fs.writeFileSync(path.join(tmp, CONDITIONS_DIR, cls, name), encodePng(condition.pixels, resolution, resolution, condition.channels));
        sourceLines.push(`${cls}/${path.relative(path.join(index.root, cls), it.file).split(path.sep).join('/')} ${sha256Bytes(decoded[i].bytes)}\n`);
        imageLines.push(`${rel} ${pixelHash(image)}\n`);
        conditionLines.push(`${rel} ${pixelHash(condition)}\n`);
        classes[cls] += 1;
      });
      log(`condition pairs: ${Math.min(start + batchSize, index.items.length)}/${index.items.length}`);
    }
    const hash = (lines: string[]) => sha256Bytes([...lines].sort().join(''));
    const manifest: ConditionPairsManifest = {
      format: PAIRS_FORMAT,
      kind,
      channels,
      options,
      resolution,
      count: index.items.length,
      classes,
      source: { dir: path.resolve(o.input), contentHash: hash(sourceLines) },
      hashes: { images: hash(imageLines), conditions: hash(conditionLines) },
      command: o.command ?? '',
    };
    fs.writeFileSync(path.join(tmp, PAIRS_MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    moveIntoPlace(tmp, o.out);
    return manifest;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Renames tmp to out; an earlier build at out is moved aside first and deleted after. */
function moveIntoPlace(tmp: string, out: string): void {
  checkReplaceable(out);
  const old = `${out}.old-${process.pid}`;
  const had = fs.existsSync(out);
  if (had) fs.renameSync(out, old);
  try {
    fs.renameSync(tmp, out);
  } catch (e) {
    if (had) fs.renameSync(old, out);
    throw e;
  }
  fs.rmSync(old, { recursive: true, force: true });
}
