// The trainer's data order. Everything is a pure function of (seed, epoch, position): the
// epoch's permutation comes from (seed, epoch) and a batch's flips from (seed, epoch, position),
// with a JS PRNG rather than torch's, so a run resumed from {epoch, position} sees exactly the
// batches the uninterrupted run would have, whatever else consumed torch's random stream.
import { Tensor } from '../torch/tensor';
import { mulberry32 } from './prng';

export interface BatchSource {
  readonly length: number;
  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: Tensor; y: Tensor };
}

export interface IteratorState { epoch: number; position: number }

export interface BatchIteratorOptions {
  batchSize: number;
  seed: number;
  /** A new random order every epoch (default true); false: 0..n-1 every epoch. */
  shuffle?: boolean;
  /** Random horizontal flips with p = 0.5 (default true). */
  flip?: boolean;
  /** Skip an epoch's last, partial batch (default true, as the reference's DataLoader(drop_last=True)). */
  dropLast?: boolean;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit seed from a tuple of integers (each taken as 64 bits), well mixed so that neighbours are unrelated. */
export function hashSeed(...parts: number[]): number {
  let h = 0x2545f491;
  for (const p of parts) {
    if (!Number.isSafeInteger(p)) throw new RangeError(`hashSeed: expected integers, got ${p}`);
    const lo = p >>> 0;
    const hi = Math.floor(p / 0x100000000) >>> 0;
    h = fmix32(((h ^ lo) + 0x9e3779b9) >>> 0);
    h = fmix32(((h ^ hi) + 0x9e3779b9) >>> 0);
  }
  return h;
}

/** 0..n-1 shuffled by Fisher-Yates with mulberry32(seed). */
export function seededPermutation(n: number, seed: number): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const rand = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

// Distinct streams from the same user seed.
const PERMUTATION_STREAM = 1;
const FLIP_STREAM = 2;

export class BatchIterator {
  readonly batchSize: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly flip: boolean;
  readonly dropLast: boolean;
  private epoch = 0;
  private position = 0;
  private cached: { epoch: number; perm: Uint32Array } | null = null;

  constructor(private readonly source: BatchSource, o: BatchIteratorOptions) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new RangeError(`BatchIterator: batchSize must be a positive integer, got ${o.batchSize}`);
    if (!Number.isSafeInteger(o.seed)) throw new RangeError(`BatchIterator: seed must be an integer, got ${o.seed}`);
    this.batchSize = o.batchSize;
    this.seed = o.seed;
    this.shuffle = o.shuffle ?? true;
    this.flip = o.flip ?? true;
    this.dropLast = o.dropLast ?? true;
    const n = source.length;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`BatchIterator: the data source is empty (length ${n})`);
    if (this.dropLast && n < this.batchSize) {
      throw new RangeError(`BatchIterator: ${n} examples make no full batch of ${this.batchSize} (use a smaller batchSize or dropLast: false)`);
    }
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    const n = this.source.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The example order of an epoch. */
  order(epoch: number): Uint32Array {
    if (this.cached?.epoch !== epoch) {
      const n = this.source.length;
      const perm = this.shuffle ? seededPermutation(n, hashSeed(this.seed, PERMUTATION_STREAM, epoch)) : Uint32Array.from({ length: n }, (_, i) => i);
      this.cached = { epoch, perm };
    }
    return this.cached.perm;
  }

  /** The next batch; after an epoch's last batch, the first of the next epoch. */
  next(): { x: Tensor; y: Tensor; indices: number[] } {
    const n = this.source.length;
    let { epoch, position } = this;
    if (position + (this.dropLast ? this.batchSize : 1) > n) {
      epoch += 1;
      position = 0;
    }
    const end = Math.min(position + this.batchSize, n);
    const indices = Array.from(this.order(epoch).subarray(position, end));
    let flips: boolean[] | undefined;
    if (this.flip) {
      const rand = mulberry32(hashSeed(this.seed, FLIP_STREAM, epoch, position));
      flips = indices.map(() => rand() < 0.5);
    }
    const { x, y } = this.source.batch(indices, flips);
    this.epoch = epoch;
    this.position = end;
    return { x, y, indices };
  }

  /** Where the iterator stands: save it with a checkpoint. */
  state(): IteratorState {
    return { epoch: this.epoch, position: this.position };
  }

  /** Continues from a saved state (same data, seed and batch size give the identical continuation). */
  setState(s: IteratorState): void {
    const n = this.source.length;
    if (typeof s !== 'object' || s === null) throw new TypeError('BatchIterator.setState: expected { epoch, position }');
    if (!Number.isSafeInteger(s.epoch) || s.epoch < 0) throw new RangeError(`BatchIterator.setState: epoch must be an integer >= 0, got ${s.epoch}`);
    if (!Number.isSafeInteger(s.position) || s.position < 0 || s.position > n) {
      throw new RangeError(`BatchIterator.setState: position must be an integer in 0..${n} (the data size), got ${s.position}`);
    }
    this.epoch = s.epoch;
    this.position = s.position;
  }
}
