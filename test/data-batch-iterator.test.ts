// BatchIterator: each epoch visits every example once (dropLast drops only the tail), orders are
// a function of the seed alone (not of torch's RNG), and state()/setState() resumes the very same
// continuation of batches and flips.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { BatchIterator, BatchSource, hashSeed, seededPermutation } from '../src/data/batch-iterator';
import { ImageDataset } from '../src/data/image-dataset';

/** A source that records what it was asked for and returns tiny tensors. */
class Recorder implements BatchSource {
  calls: { indices: number[]; flip: boolean[] | undefined }[] = [];
  constructor(readonly length: number) {}
  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: torch.Tensor; y: torch.Tensor } {
    this.calls.push({ indices: Array.from(indices), flip: flip && Array.from(flip) });
    return { x: torch.zeros([indices.length]), y: torch.zeros([indices.length], { dtype: 'int64' }) };
  }
}

function take(it: BatchIterator, k: number): { indices: number[] }[] {
  const out: { indices: number[] }[] = [];
  for (let i = 0; i < k; i++) {
    torch.scope(() => {
      const b = it.next();
      out.push({ indices: b.indices });
    });
  }
  return out;
}

test('dropLast: every epoch is floor(n/B) full batches of distinct indices, in a new order each epoch', () => {
  const n = 23, B = 5;
  const src = new Recorder(n);
  const it = new BatchIterator(src, { batchSize: B, seed: 11 });
  assert.equal(it.batchesPerEpoch, 4);
  const epochs: number[][] = [];
  for (let e = 0; e < 3; e++) {
    const seen = take(it, 4).flatMap((b) => {
      assert.equal(b.indices.length, B);
      return b.indices;
    });
    assert.equal(new Set(seen).size, 20, 'no index twice within an epoch');
    seen.forEach((i) => assert.ok(Number.isInteger(i) && i >= 0 && i < n));
    epochs.push(seen);
    assert.deepEqual(it.state(), { epoch: e, position: 20 });
  }
  assert.notDeepEqual(epochs[0], epochs[1]);
  // The 20 seen are the first 20 of the epoch's permutation; the 3 dropped differ between epochs.
  for (let e = 0; e < 3; e++) assert.deepEqual(epochs[e], Array.from(it.order(e).subarray(0, 20)));
  const dropped = epochs.map((s) => [...Array(n).keys()].filter((i) => !s.includes(i)).join(','));
  assert.ok(new Set(dropped).size > 1, 'the dropped tail changes with the epoch');
});

test('dropLast false: the last batch is partial and every index is visited exactly once', () => {
  const src = new Recorder(7);
  const it = new BatchIterator(src, { batchSize: 3, seed: 0, dropLast: false });
  const batches = take(it, 3);
  assert.deepEqual(batches.map((b) => b.indices.length), [3, 3, 1]);
  assert.deepEqual(batches.flatMap((b) => b.indices).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(take(it, 1)[0].indices.length, 3); // the next epoch starts
  assert.deepEqual(it.state(), { epoch: 1, position: 3 });
});

test('no shuffle: 0..n-1 in order; flips are roughly half and vary', () => {
  const src = new Recorder(10);
  const it = new BatchIterator(src, { batchSize: 4, seed: 5, shuffle: false });
  assert.deepEqual(take(it, 3).map((b) => b.indices), [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]);

  const many = new Recorder(1000);
  const it2 = new BatchIterator(many, { batchSize: 100, seed: 1 });
  take(it2, 20);
  const flips = many.calls.flatMap((c) => c.flip!);
  const ones = flips.filter(Boolean).length;
  assert.ok(ones > 900 && ones < 1100, `${ones} of 2000 flipped`);
  const off = new Recorder(8);
  take(new BatchIterator(off, { batchSize: 4, seed: 1, flip: false }), 2);
  assert.ok(off.calls.every((c) => c.flip === undefined));
});

test('same seed, same batches and flips (whatever torch RNG does); another seed differs', () => {
  const a = new Recorder(50), b = new Recorder(50), c = new Recorder(50);
  const ia = new BatchIterator(a, { batchSize: 8, seed: 42 });
  const ib = new BatchIterator(b, { batchSize: 8, seed: 42 });
  const ic = new BatchIterator(c, { batchSize: 8, seed: 43 });
  torch.manualSeed(1);
  take(ia, 15);
  torch.manualSeed(2);
  torch.randn([100]).dispose();
  take(ib, 15);
  take(ic, 15);
  assert.deepEqual(a.calls, b.calls);
  assert.notDeepEqual(a.calls.map((x) => x.indices), c.calls.map((x) => x.indices));
  assert.notDeepEqual(a.calls.map((x) => x.flip), c.calls.map((x) => x.flip));
});

test('state()/setState() resumes the identical continuation, also mid-epoch and at an epoch end', () => {
  for (const stop of [3, 4, 9]) { // mid-epoch, exactly at the end of epoch 0 (4 batches), inside epoch 2
    const full = new Recorder(21);
    const reference = new BatchIterator(full, { batchSize: 5, seed: 9 });
    take(reference, stop + 6);

    const first = new Recorder(21);
    const before = new BatchIterator(first, { batchSize: 5, seed: 9 });
    take(before, stop);
    const saved = JSON.parse(JSON.stringify(before.state())) as { epoch: number; position: number };

    const second = new Recorder(21);
    const resumed = new BatchIterator(second, { batchSize: 5, seed: 9 });
    resumed.setState(saved);
    take(resumed, 6);
    assert.deepEqual([...first.calls, ...second.calls], full.calls, `resumed after ${stop} batches`);
  }
});

test('bad options and states are refused', () => {
  const src = new Recorder(10);
  assert.throws(() => new BatchIterator(src, { batchSize: 0, seed: 0 }), /batchSize/);
  assert.throws(() => new BatchIterator(src, { batchSize: 2, seed: 0.5 }), /seed/);
  assert.throws(() => new BatchIterator(src, { batchSize: 11, seed: 0 }), /10 examples make no full batch of 11/);
  assert.throws(() => new BatchIterator(new Recorder(0), { batchSize: 1, seed: 0, dropLast: false }), /empty/);
  const it = new BatchIterator(src, { batchSize: 3, seed: 0 });
  assert.throws(() => it.setState({ epoch: -1, position: 0 }), /epoch/);
  assert.throws(() => it.setState({ epoch: 0, position: 11 }), /position must be an integer in 0..10/);
  assert.throws(() => it.setState({ epoch: 0, position: 1.5 }), /position/);
  assert.doesNotThrow(() => it.setState({ epoch: 3, position: 10 }));
});

test('with an ImageDataset: x rows are the indexed images, flipped where the iterator said', () => {
  const n = 6;
  const pixels = Uint8Array.from({ length: n * 3 * 1 * 2 }, (_, i) => i * 3);
  const ds = ImageDataset.fromTensors(torch.fromTypedArray(pixels, [n, 3, 1, 2]), torch.fromTypedArray(BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 2))));
  const it = new BatchIterator(ds, { batchSize: 4, seed: 3 });
  const flipsSeen = new Set<boolean>();
  for (let k = 0; k < 6; k++) {
    torch.scope(() => {
      const { x, y, indices } = it.next();
      assert.deepEqual(y.toArray(), indices.map((i) => i % 2));
      const xs = x.toArray();
      indices.forEach((i, b) => {
        const left = pixels[i * 6], right = pixels[i * 6 + 1]; // channel 0 of image i
        const row = [xs[b * 6], xs[b * 6 + 1]].map((v) => Math.round((v + 1) * 127.5));
        assert.ok(
          (row[0] === left && row[1] === right) || (row[0] === right && row[1] === left),
          `image ${i}: got ${row}, stored ${left},${right}`,
        );
        flipsSeen.add(row[0] === right);
      });
    });
  }
  assert.equal(flipsSeen.size, 2, 'some rows flipped and some not');
  ds.dispose();
});

test('seededPermutation and hashSeed', () => {
  const p = seededPermutation(100, 7);
  assert.deepEqual([...p].sort((a, b) => a - b), [...Array(100).keys()]);
  assert.deepEqual(p, seededPermutation(100, 7));
  assert.notDeepEqual(p, seededPermutation(100, 8));
  assert.equal(hashSeed(1, 2), hashSeed(1, 2));
  assert.notEqual(hashSeed(1, 2), hashSeed(2, 1));
  assert.notEqual(hashSeed(0), hashSeed(0x100000000)); // the high word counts
  assert.notEqual(hashSeed(-1), hashSeed(0xffffffff));
});
