// The benchmark's few-shot training sets: a stratified, seeded subsample of a target's train split.
// Class counts follow the class proportions (largest remainder, every class at least once when the
// size allows it), and within a class the images are the first of a seeded permutation, so the
// set depends only on (labels, size, seed) and every method and seed trains on the same images.
import { hashSeed, seededPermutation } from '../../src/data/batch-iterator';

const SUBSAMPLE_STREAM = 11;

/**
 * How many of each class to take: n split in proportion to `counts` by largest remainder, with
 * each non-empty class given at least one image when n >= the number of non-empty classes, and
 * never more than a class holds. Ties in the remainder go to the lower class index.
 */
export function stratifiedCounts(counts: readonly number[], n: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`train size must be a positive integer, got ${n}`);
  for (const c of counts) if (!Number.isInteger(c) || c < 0) throw new RangeError(`class counts must be integers >= 0, got ${c}`);
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) throw new RangeError('the train split is empty');
  if (n >= total) return [...counts];
  const nonEmpty = counts.filter((c) => c > 0).length;
  const floor = n >= nonEmpty ? 1 : 0;
  const take = counts.map((c) => (c > 0 ? Math.max(floor, Math.min(c, Math.floor((n * c) / total))) : 0));
  let left = n - take.reduce((a, b) => a + b, 0);
  // Too many after the minimum of one per class: take back from the classes most above their share.
  while (left < 0) {
    let best = -1;
    for (let k = 0; k < counts.length; k++) {
      if (take[k] <= floor) continue;
      if (best < 0 || take[k] - (n * counts[k]) / total > take[best] - (n * counts[best]) / total) best = k;
    }
    take[best] -= 1;
    left += 1;
  }
  while (left > 0) {
    let best = -1;
    for (let k = 0; k < counts.length; k++) {
      if (take[k] >= counts[k]) continue;
      if (best < 0 || (n * counts[k]) / total - take[k] > (n * counts[best]) / total - take[best]) best = k;
    }
    take[best] += 1;
    left -= 1;
  }
  return take;
}

/**
 * Positions (into `labels`, ascending) of a stratified subsample of n items: class k contributes
 * stratifiedCounts(...)[k] items, the first ones of a permutation seeded by (seed, k).
 */
export function stratifiedSubsample(labels: readonly number[], n: number, seed: number): number[] {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`subsample seed must be an integer >= 0, got ${seed}`);
  const numClasses = labels.reduce((a, b) => Math.max(a, b + 1), 0);
  const members: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0) throw new RangeError(`labels must be integers >= 0, got ${l} at ${i}`);
    members[l].push(i);
  });
  const take = stratifiedCounts(members.map((m) => m.length), n);
  const out: number[] = [];
  members.forEach((m, k) => {
    const perm = seededPermutation(m.length, hashSeed(seed, SUBSAMPLE_STREAM, k));
    for (let j = 0; j < take[k]; j++) out.push(m[perm[j]]);
  });
  return out.sort((a, b) => a - b);
}
