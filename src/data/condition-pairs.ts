// A condition-pair folder (built by `difftune datasets condition`, see
// src/data/conditions/build-pairs.ts) loaded into memory as (image, condition, label) triples.
// Like ImageDataset, pixels stay uint8 and batch() turns them into float [-1, 1] on demand; a
// horizontal flip flips the image and its condition together.
import * as path from 'path';
import { Tensor } from '../torch/tensor';
import { ConditionKind } from './conditions/index';
import { ConditionPairsManifest, CONDITIONS_DIR, IMAGES_DIR, readPairsManifest } from './conditions/pairs-manifest';
import { pixelHash } from './datasets/write-folder';
import { sha256Bytes } from './hash';
import { BatchSource } from './batch-iterator';
import { ImageDataset } from './image-dataset';

export interface LoadPairsOptions {
  /** Expected side; an error if the folder was built at another one (default: the manifest's). */
  resolution?: number;
  /** Images decoded at once (default: min(4, cores)). */
  concurrency?: number;
  /** Check the decoded pixels against the manifest's content hashes (default true). */
  verify?: boolean;
}

export class ConditionPairs implements BatchSource {
  private constructor(
    private readonly imageSet: ImageDataset,
    /** Conditions as 3 channels (a grey condition repeated), so ImageDataset's batching serves both. */
    private readonly conditionSet: ImageDataset,
    readonly manifest: ConditionPairsManifest,
  ) {}

  get length(): number { return this.imageSet.length; }
  get kind(): ConditionKind { return this.manifest.kind; }
  /** Condition channels (1 or 3). */
  get channels(): number { return this.manifest.channels; }
  get classes(): string[] { return this.imageSet.classes; }
  /** Image files, in order (the condition of files[i] has the same name under conditions/). */
  get files(): string[] { return this.imageSet.files; }
  /** uint8 [N, 3, H, W], owned by this object. */
  get images(): Tensor { return this.imageSet.images; }
  /** int64 [N], owned by this object. */
  get labels(): Tensor { return this.imageSet.labels; }
  /** uint8 [N, C, H, W] (a new view each call). */
  get conditions(): Tensor {
    return this.channels === 1 ? this.conditionSet.images.narrow(1, 0, 1) : this.conditionSet.images.narrow(1, 0, 3);
  }

  /** Reads DIR/manifest.json, DIR/images and DIR/conditions; errors name the folder or file at fault. */
  static async load(dir: string, o: LoadPairsOptions = {}): Promise<ConditionPairs> {
    const manifest = readPairsManifest(dir);
    const resolution = o.resolution ?? manifest.resolution;
    if (resolution !== manifest.resolution) {
      throw new Error(`${dir}: condition pairs were built at ${manifest.resolution} px, not ${resolution}; rebuild with 'difftune datasets condition --resolution ${resolution}'`);
    }
    const images = await ImageDataset.fromFolder(path.join(dir, IMAGES_DIR), { resolution, concurrency: o.concurrency });
    let conditions: ImageDataset | null = null;
    try {
      conditions = await ImageDataset.fromFolder(path.join(dir, CONDITIONS_DIR), { resolution, concurrency: o.concurrency });
      checkMatching(dir, images, conditions, manifest);
      if (o.verify ?? true) {
        checkHash(dir, 'images', images.images, 3, manifest.hashes.images, images);
        checkHash(dir, 'conditions', conditions.images, manifest.channels, manifest.hashes.conditions, images);
      }
      return new ConditionPairs(images, conditions, manifest);
    } catch (e) {
      images.dispose();
      conditions?.dispose();
      throw e;
    }
  }

  /** Images x and conditions c as float32 [-1, 1] ([n, 3, H, W] and [n, C, H, W]), int64 labels y; flip[i] mirrors both. */
  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: Tensor; y: Tensor; c: Tensor } {
    const { x, y } = this.imageSet.batch(indices, flip);
    const c3 = this.conditionSet.batch(indices, flip);
    c3.y.dispose();
    if (this.channels === 3) return { x, y, c: c3.x };
    const c = c3.x.narrow(1, 0, 1).contiguous();
    c3.x.dispose();
    return { x, y, c };
  }

  dispose(): void {
    this.imageSet.dispose();
    this.conditionSet.dispose();
  }
}

/** Loads a condition-pair folder (see ConditionPairs.load). */
export function loadConditionPairs(dir: string, o: LoadPairsOptions = {}): Promise<ConditionPairs> {
  return ConditionPairs.load(dir, o);
}

function relativeNames(set: ImageDataset, root: string): string[] {
  return set.files.map((f) => path.relative(root, f).split(path.sep).join('/'));
}

function checkMatching(dir: string, images: ImageDataset, conditions: ImageDataset, manifest: ConditionPairsManifest): void {
  const a = relativeNames(images, path.join(dir, IMAGES_DIR));
  const b = relativeNames(conditions, path.join(dir, CONDITIONS_DIR));
  const missing = a.find((f) => !b.includes(f)) ?? b.find((f) => !a.includes(f));
  if (missing !== undefined || a.join('\n') !== b.join('\n')) {
    throw new Error(`${dir}: ${IMAGES_DIR}/ and ${CONDITIONS_DIR}/ do not hold the same files${missing ? ` (${missing} is in only one)` : ''}`);
  }
  if (a.length !== manifest.count) throw new Error(`${dir}: manifest.json says count ${manifest.count}, found ${a.length} pairs`);
}

/** Recomputes build-pairs.ts's content hash of one tree from the decoded pixels. */
function checkHash(dir: string, tree: string, chw: Tensor, channels: number, want: string, images: ImageDataset): void {
  const [n, , h, w] = chw.shape;
  const hwc = chw.narrow(1, 0, channels).permute(0, 2, 3, 1).contiguous();
  const bytes = hwc.data() as Uint8Array;
  hwc.dispose();
  const size = h * w * channels;
  const names = relativeNames(images, path.join(dir, IMAGES_DIR));
  const lines = names.map((name, i) => `${name} ${pixelHash({ pixels: bytes.subarray(i * size, (i + 1) * size), width: w, height: h, channels: channels as 1 | 3 })}\n`);
  if (lines.length !== n) throw new Error(`${dir}: internal: ${lines.length} names for ${n} ${tree}`);
  const got = sha256Bytes(lines.sort().join(''));
  if (got !== want) {
    throw new Error(`${dir}: the pixels under ${tree}/ do not match manifest.json's hashes.${tree} (a file was changed after the build; rebuild the folder)`);
  }
}
