// A target as the testbed uses it: a small training subset (stratified, seeded) and everything else
// held out, each its own class-subfolder folder under WORK/targets/, so the held-out reference holds
// every target image the runs never train on, and both sets can be listed and audited. Files are
// hard links (copies across file systems), or grey PNGs when the testbed's source is grey. A
// manifest fixes the split; an existing one with the same inputs is reused.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { scanImageFolder } from '../../src/data/image-folder';
import { writeFileAtomic } from '../../src/tuning/write-atomic';
import { readJsonFile } from './job';
import { stratifiedSubsample } from './subsample';

export interface TargetSplit {
  trainDir: string;
  heldoutDir: string;
  train: number;
  heldout: number;
}

interface SplitManifest {
  format: 'difftune-target-split/1';
  source: string;
  sourceImages: number;
  trainSize: number;
  subsetSeed: number;
  grey: boolean;
  train: number;
  heldout: number;
}

export function targetSplitDir(work: string, target: string, trainSize: number, subsetSeed: number, grey: boolean): string {
  return path.join(work, 'targets', `${target}${grey ? '-grey' : ''}-n${trainSize}-s${subsetSeed}`);
}

async function place(from: string, to: string, grey: boolean): Promise<void> {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  if (grey) {
    await sharp(from).flatten({ background: '#ffffff' }).greyscale().toColourspace('b-w').png().toFile(to);
    return;
  }
  try {
    fs.linkSync(from, to);
  } catch {
    fs.copyFileSync(from, to);
  }
}

/** The split folders of `dataDir` (made on first use; the manifest is written last, so a partial split is redone). */
export async function ensureTargetSplit(o: { dataDir: string; target: string; work: string; trainSize: number; subsetSeed: number; grey: boolean }): Promise<TargetSplit> {
  const dir = targetSplitDir(o.work, o.target, o.trainSize, o.subsetSeed, o.grey);
  const manifestFile = path.join(dir, 'split.json');
  const index = scanImageFolder(o.dataDir);
  const trainDir = path.join(dir, 'train');
  const heldoutDir = path.join(dir, 'heldout');
  if (fs.existsSync(manifestFile)) {
    const m = readJsonFile<SplitManifest>(manifestFile, 'target split');
    if (m.sourceImages !== index.items.length) {
      throw new Error(`${dir}: split of ${m.sourceImages} images, but ${o.dataDir} now has ${index.items.length}; remove ${dir} to redo it`);
    }
    return { trainDir, heldoutDir, train: m.train, heldout: m.heldout };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const labels = index.items.map((it) => it.label);
  const inTrain = new Set(stratifiedSubsample(labels, o.trainSize, o.subsetSeed));
  const missing = index.classes.filter((_, k) => !index.items.some((it, i) => it.label === k && inTrain.has(i)));
  if (missing.length) throw new Error(`target '${o.target}': a training set of ${o.trainSize} leaves classes ${missing.join(', ')} without an image; use a larger --train-size`);
  for (const cls of index.classes) {
    // Both folders list every class, so a label means the same class in training and evaluation.
    fs.mkdirSync(path.join(trainDir, cls), { recursive: true });
    fs.mkdirSync(path.join(heldoutDir, cls), { recursive: true });
  }
  let train = 0;
  for (let i = 0; i < index.items.length; i++) {
    const it = index.items[i];
    const rel = path.relative(o.dataDir, it.file);
    const name = o.grey ? rel.replace(/\.[^./]+$/, '.png') : rel;
    await place(it.file, path.join(inTrain.has(i) ? trainDir : heldoutDir, name), o.grey);
    if (inTrain.has(i)) train++;
  }
  const manifest: SplitManifest = {
    format: 'difftune-target-split/1', source: path.resolve(o.dataDir), sourceImages: index.items.length,
    trainSize: o.trainSize, subsetSeed: o.subsetSeed, grey: o.grey, train, heldout: index.items.length - train,
  };
  writeFileAtomic(manifestFile, JSON.stringify(manifest, null, 2) + '\n');
  return { trainDir, heldoutDir, train, heldout: manifest.heldout };
}
