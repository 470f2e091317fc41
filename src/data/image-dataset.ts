// An in-memory image dataset: every image decoded once into one uint8 [N, 3, H, W] tensor
// (a quarter of float32's memory), turned into float batches in [-1, 1] on demand. Meant for
// small images; large ones go through latent caches instead.
import * as os from 'os';
import { fromTypedArray } from '../torch/creation';
import { where } from '../torch/functions';
import { scope } from '../torch/scope';
import { Tensor } from '../torch/tensor';
import { BatchSource } from './batch-iterator';
import { decodeImage, DecodeOptions } from './decode';
import { scanImageFolder } from './image-folder';

export interface FromFolderOptions extends DecodeOptions {
  /** A file that cannot be decoded: 'throw' (default) an Error naming it, or 'skip' it with a warning naming it. */
  onError?: 'throw' | 'skip';
  /** Images decoded at once (default: min(4, cores)). */
  concurrency?: number;
  /** Where skip warnings go (default console.warn). */
  warn?: (msg: string) => void;
}

export class ImageDataset implements BatchSource {
  private constructor(
    /** uint8 [N, 3, H, W], kept: freed by dispose(). */
    readonly images: Tensor,
    /** int64 [N], kept: freed by dispose(). */
    readonly labels: Tensor,
    readonly classes: string[],
    /** The source file of each image ('' for images that came from tensors). */
    readonly files: string[],
  ) {}

  get length(): number {
    return this.images.shape[0];
  }

  /** Decodes root/<class>/.../<image> (torchvision ImageFolder order and labels) into memory. */
  static async fromFolder(root: string, o: FromFolderOptions): Promise<ImageDataset> {
    const index = scanImageFolder(root);
    const onError = o.onError ?? 'throw';
    if (onError !== 'throw' && onError !== 'skip') throw new RangeError(`ImageDataset.fromFolder: onError must be 'throw' or 'skip', got ${String(onError)}`);
    const concurrency = o.concurrency ?? Math.max(1, Math.min(4, os.availableParallelism()));
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`ImageDataset.fromFolder: concurrency must be a positive integer, got ${concurrency}`);
    const warn = o.warn ?? ((msg: string) => console.warn(msg));
    const res = o.resolution;
    const plane = res * res;
    const n = index.items.length;
    const pixels = new Uint8Array(n * 3 * plane);
    const decoded = new Uint8Array(n); // 1 where pixels[i] holds image i
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (!failed && next < n) {
        const i = next++;
        let rgb: Uint8Array;
        try {
          rgb = await decodeImage(index.items[i].file, o);
        } catch (e) {
          if (onError === 'throw') {
            failed = true;
            throw e;
          }
          warn(`ImageDataset: skipping ${index.items[i].file}: ${(e as Error).message}`);
          continue;
        }
        // HWC -> CHW
        const base = i * 3 * plane;
        for (let p = 0; p < plane; p++) {
          pixels[base + p] = rgb[p * 3];
          pixels[base + plane + p] = rgb[p * 3 + 1];
          pixels[base + 2 * plane + p] = rgb[p * 3 + 2];
        }
        decoded[i] = 1;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));

    const keep: number[] = [];
    for (let i = 0; i < n; i++) if (decoded[i]) keep.push(i);
    if (keep.length === 0) throw new Error(`ImageDataset.fromFolder: none of the ${n} images in ${root} could be decoded`);
    // Close the gaps left by skipped files.
    keep.forEach((from, to) => {
      if (from !== to) pixels.copyWithin(to * 3 * plane, from * 3 * plane, (from + 1) * 3 * plane);
    });
    const labels = BigInt64Array.from(keep, (i) => BigInt(index.items[i].label));
    return new ImageDataset(
      fromTypedArray(pixels.subarray(0, keep.length * 3 * plane), [keep.length, 3, res, res]).keep(),
      fromTypedArray(labels).keep(),
      index.classes,
      keep.map((i) => index.items[i].file),
    );
  }

  /**
   * Wraps existing tensors (uint8 [N, 3, H, W] and int64 [N]); the dataset takes them over (keeps
   * them, and dispose() frees them). Classes default to '0'..'max label'.
   */
  static fromTensors(images: Tensor, labels: Tensor, classes?: string[]): ImageDataset {
    const s = images.shape;
    if (images.dtype !== 'uint8' || s.length !== 4 || s[1] !== 3) {
      throw new TypeError(`ImageDataset.fromTensors: images must be uint8 [N, 3, H, W], got ${images.dtype} [${s.join(', ')}]`);
    }
    if (labels.dtype !== 'int64' || labels.ndim !== 1 || labels.shape[0] !== s[0]) {
      throw new TypeError(`ImageDataset.fromTensors: labels must be int64 [${s[0]}], got ${labels.dtype} [${labels.shape.join(', ')}]`);
    }
    const values = Array.from(labels.data() as BigInt64Array, Number);
    const max = values.reduce((a, b) => Math.max(a, b), -1);
    const min = values.reduce((a, b) => Math.min(a, b), 0);
    const names = classes ?? Array.from({ length: max + 1 }, (_, i) => String(i));
    if (min < 0 || max >= names.length) {
      throw new RangeError(`ImageDataset.fromTensors: labels must lie in 0..${names.length - 1} (one per class), found ${min < 0 ? min : max}`);
    }
    return new ImageDataset(images.keep(), labels.keep(), [...names], new Array<string>(s[0]).fill(''));
  }

  /** A new dataset (its own tensors) of the given examples, in the given order. */
  subset(indices: number[]): ImageDataset {
    this.checkIndices(indices, 'subset');
    const idx = this.indexTensor(indices);
    const out = new ImageDataset(this.images.indexSelect(0, idx).keep(), this.labels.indexSelect(0, idx).keep(), [...this.classes], indices.map((i) => this.files[i]));
    idx.dispose();
    return out;
  }

  /** float32 [n, 3, H, W] in [-1, 1] (x / 127.5 - 1), flipped horizontally where flip[i]; int64 labels [n]. */
  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: Tensor; y: Tensor } {
    this.checkIndices(indices, 'batch');
    if (flip !== undefined && flip.length !== indices.length) {
      throw new RangeError(`ImageDataset.batch: flip has ${flip.length} entries for ${indices.length} indices`);
    }
    return scope(() => {
      const idx = this.indexTensor(indices);
      let x = this.images.indexSelect(0, idx).to({ dtype: 'float32' }).div(127.5).sub(1);
      if (flip !== undefined && Array.prototype.some.call(flip, Boolean)) {
        const mask = fromTypedArray(Uint8Array.from(flip as ArrayLike<boolean>, Number), [indices.length, 1, 1, 1], { dtype: 'bool', device: this.images.device });
        x = where(mask, x.flip(3), x);
      }
      return { x, y: this.labels.indexSelect(0, idx) };
    });
  }

  dispose(): void {
    this.images.dispose();
    this.labels.dispose();
  }

  private indexTensor(indices: ArrayLike<number>): Tensor {
    return fromTypedArray(BigInt64Array.from(indices as ArrayLike<number>, (i) => BigInt(i)), undefined, { device: this.images.device });
  }

  private checkIndices(indices: ArrayLike<number>, what: string): void {
    const n = this.length;
    if (indices.length === 0) throw new RangeError(`ImageDataset.${what}: no indices given`);
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`ImageDataset.${what}: index ${i} at position ${k} is outside 0..${n - 1}`);
    }
  }
}
