// Trains the offline feature extractor: the icon classifier on a class-subfolder dataset
// (iconnet: label = icon set), on the train part of a seeded split; reports the accuracy on the
// held-out part, and writes the weights with a model card (the exact command, the data's hash,
// the accuracy) so that the shipped file can be reproduced and checked.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { hashSeed, seededPermutation } from '../data/batch-iterator';
import { sha256File } from '../data/hash';
import { ImageDataset } from '../data/image-dataset';
import { mulberry32 } from '../data/prng';
import { splitIndices } from '../data/split';
import { ICON_CLASSIFIER_INPUT, IconClassifier } from '../models/icon-classifier';
import { writeFileAtomic } from '../tuning/write-atomic';
import { ICONNET_FORMAT } from './extractor';
import { datasetContentHash } from './reference-stats';

export interface TrainExtractorOptions {
  /** Class-subfolder image folder (class = label). */
  data: string;
  /** Weights file (.safetensors); the card goes beside it as .json. */
  out: string;
  epochs?: number;
  batch?: number;
  /** Peak learning rate (AdamW; linear warm-up, then cosine decay to 0). */
  lr?: number;
  weightDecay?: number;
  seed?: number;
  /** Part of the data held out for the reported accuracy. */
  evalFraction?: number;
  /** Stem and stage widths (the last is the feature dimension). */
  widths?: number[];
  /** Pixels of random translation (train-time augmentation, with horizontal flips). */
  shift?: number;
  /** Where the model trains (default cpu); the data stays on the CPU. */
  device?: torch.Device;
  /** The command line, recorded in the card. */
  command?: string;
  log?: (message: string) => void;
}

export interface ExtractorCard {
  format: string;
  name: 'iconnet';
  command: string;
  weights: string;
  weights_sha256: string;
  architecture: { type: 'IconClassifier'; widths: number[]; blocksPerStage: number; featureDim: number; parameters: number; input: number };
  data: { dir: string; content_sha256: string; images: number; classes: string[]; train: number; eval: number; split_seed: number; eval_fraction: number };
  training: { device: string; epochs: number; batch: number; lr: number; weight_decay: number; seed: number; shift: number; seconds: number; omp_threads: number; cores: number };
  accuracy: { eval: number; train: number; chance: number; per_epoch_eval: number[] };
  libtorch: string;
  created: string;
}

/** Trains, saves weights + card, and returns the card. */
export async function trainExtractor(o: TrainExtractorOptions): Promise<ExtractorCard> {
  const epochs = positiveInt(o.epochs ?? 6, 'epochs');
  const batch = positiveInt(o.batch ?? 128, 'batch');
  const lr = o.lr ?? 2e-3;
  const weightDecay = o.weightDecay ?? 0.05;
  const seed = o.seed ?? 0;
  const evalFraction = o.evalFraction ?? 0.1;
  const shift = o.shift ?? 2;
  const log = o.log ?? ((m: string) => console.log(m));
  if (!(lr > 0)) throw new RangeError(`lr must be > 0, got ${lr}`);
  if (!(weightDecay >= 0)) throw new RangeError(`weight decay must be >= 0, got ${weightDecay}`);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  if (!(evalFraction > 0 && evalFraction < 1)) throw new RangeError(`eval fraction must be in (0, 1), got ${evalFraction}`);
  if (!Number.isInteger(shift) || shift < 0 || shift > 8) throw new RangeError(`shift must be an integer in 0..8, got ${shift}`);
  if (!/\.safetensors$/i.test(o.out)) throw new Error(`--out must end in .safetensors, got '${o.out}'`);
  const started = Date.now();

  log(`loading ${o.data} at ${ICON_CLASSIFIER_INPUT}x${ICON_CLASSIFIER_INPUT}`);
  const contentHash = datasetContentHash(o.data);
  const ds = await ImageDataset.fromFolder(o.data, { resolution: ICON_CLASSIFIER_INPUT });
  try {
    if (ds.classes.length < 2) throw new Error(`${o.data}: needs at least 2 class folders to train a classifier, found ${ds.classes.length}`);
    const split = splitIndices(ds.length, { evalFraction, seed });
    if (split.train.length < batch) throw new Error(`${o.data}: the train split has ${split.train.length} images, fewer than one batch (${batch})`);
    if (split.eval.length === 0) throw new Error(`${o.data}: the eval split is empty (${ds.length} images, eval fraction ${evalFraction})`);
    log(`${ds.length} images in ${ds.classes.length} classes: ${split.train.length} train, ${split.eval.length} eval`);

    torch.manualSeed(seed);
    const model = new IconClassifier({ numClasses: ds.classes.length, widths: o.widths });
    const device = o.device ?? 'cpu';
    if (device !== 'cpu') model.to({ device });
    const decay = model.namedParameters().filter(([, p]) => p.ndim > 1).map(([, p]) => p);
    const noDecay = model.namedParameters().filter(([, p]) => p.ndim <= 1).map(([, p]) => p);
    const opt = new torch.optim.AdamW([
      { params: decay, options: { weightDecay } },
      { params: noDecay, options: { weightDecay: 0 } },
    ], { lr, weightDecay, betas: [0.9, 0.999], eps: 1e-8, amsgrad: false });
    const stepsPerEpoch = Math.floor(split.train.length / batch);
    const totalSteps = stepsPerEpoch * epochs;
    const warmup = Math.min(Math.round(0.03 * totalSteps) + 1, totalSteps);
    const lrAt = (step: number): number => step < warmup
      ? lr * (step + 1) / warmup
      : 0.5 * lr * (1 + Math.cos(Math.PI * (step - warmup) / Math.max(1, totalSteps - warmup)));

    const perEpochEval: number[] = [];
    let trainAccuracy = 0;
    let step = 0;
    for (let epoch = 0; epoch < epochs; epoch++) {
      model.train();
      const perm = seededPermutation(split.train.length, hashSeed(seed, epoch, 11));
      const rand = mulberry32(hashSeed(seed, epoch, 12));
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      const epochStart = Date.now();
      for (let b = 0; b < stepsPerEpoch; b++, step++) {
        const indices = Array.from(perm.subarray(b * batch, (b + 1) * batch), (j) => split.train[j]);
        const flips = indices.map(() => rand() < 0.5);
        const offsets = indices.map(() => [Math.floor(rand() * (2 * shift + 1)), Math.floor(rand() * (2 * shift + 1))]);
        for (const g of opt.paramGroups) g.options.lr = lrAt(step);
        const stats = torch.scope(() => {
          const b = ds.batch(indices, flips);
          const x = b.x.to({ device });
          const y = b.y.to({ device });
          const logits = model.forward(translate(x, offsets, shift));
          const loss = crossEntropy(logits, y);
          opt.zeroGrad();
          loss.backward();
          opt.step();
          return [loss.item(), logits.argmax(1).eq(y).sum().item()];
        });
        lossSum += stats[0] * indices.length;
        correct += stats[1];
        seen += indices.length;
      }
      trainAccuracy = correct / seen;
      const evalAccuracy = accuracy(model, ds, split.eval);
      perEpochEval.push(evalAccuracy);
      log(`epoch ${epoch + 1}/${epochs}: loss ${(lossSum / seen).toFixed(4)}, train accuracy ${(100 * trainAccuracy).toFixed(2)}%, ` +
        `eval accuracy ${(100 * evalAccuracy).toFixed(2)}% (${((Date.now() - epochStart) / 1000).toFixed(0)} s)`);
    }
    model.eval();

    const metadata = {
      format: ICONNET_FORMAT,
      config: JSON.stringify(model.config),
      classes: JSON.stringify(ds.classes),
      eval_accuracy: String(perEpochEval[perEpochEval.length - 1]),
      data_sha256: contentHash,
    };
    fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    torch.saveSafetensors(o.out, model.stateDict(), metadata); // tensors from any device are written as CPU data
    const card: ExtractorCard = {
      format: `${ICONNET_FORMAT}-card`,
      name: 'iconnet',
      command: o.command ?? `difftune extractor train --data ${o.data} --out ${o.out} --epochs ${epochs} --batch ${batch} --lr ${lr} --seed ${seed} --eval-fraction ${evalFraction}`,
      weights: path.basename(o.out),
      weights_sha256: sha256File(o.out),
      architecture: {
        type: 'IconClassifier', widths: model.config.widths, blocksPerStage: model.config.blocksPerStage,
        featureDim: model.featureDim, parameters: model.numParameters(), input: ICON_CLASSIFIER_INPUT,
      },
      data: {
        dir: o.data, content_sha256: contentHash, images: ds.length, classes: ds.classes,
        train: split.train.length, eval: split.eval.length, split_seed: seed, eval_fraction: evalFraction,
      },
      training: {
        device, epochs, batch, lr, weight_decay: weightDecay, seed, shift, seconds: Math.round((Date.now() - started) / 1000),
        omp_threads: torch.getNumThreads(), cores: os.availableParallelism(),
      },
      accuracy: { eval: perEpochEval[perEpochEval.length - 1], train: trainAccuracy, chance: majorityShare(ds, split.eval), per_epoch_eval: perEpochEval },
      libtorch: torch.buildInfo().torchVersion,
      created: new Date().toISOString(),
    };
    writeFileAtomic(cardPath(o.out), `${JSON.stringify(card, null, 2)}\n`);
    for (const p of [...model.parameters(), ...model.namedBuffers().map(([, t]) => t)]) p.dispose();
    return card;
  } finally {
    ds.dispose();
  }
}

/** The card beside a weights file: X.safetensors -> X.json. */
export function cardPath(weights: string): string {
  return weights.replace(/\.safetensors$/i, '') + '.json';
}

/** Top-1 accuracy of the model (eval mode) on the given examples. */
export function accuracy(model: IconClassifier, ds: ImageDataset, indices: number[], batch = 500): number {
  model.eval();
  let correct = 0;
  for (let start = 0; start < indices.length; start += batch) {
    const part = indices.slice(start, start + batch);
    correct += torch.noGrad(() => torch.scope(() => {
      const { x, y } = ds.batch(part);
      const device = model.head.weight.device;
      return model.forward(x.to({ device })).argmax(1).eq(y.to({ device })).sum().item();
    }));
  }
  return correct / indices.length;
}

/** Mean negative log-likelihood of the labels under softmax(logits). */
function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  return torch.F.logSoftmax(logits, 1).gather(1, labels.unsqueeze(1)).mean().neg();
}

/** Shifts each image by its own offset: pad with white (the icons' background), then crop back. */
function translate(x: Tensor, offsets: number[][], shift: number): Tensor {
  if (shift === 0) return x;
  const [, , h, w] = x.shape;
  const padded = torch.F.pad(x, [shift, shift, shift, shift], 1);
  return torch.stack(offsets.map(([dy, dx], i) => padded.select(0, i).narrow(1, dy, h).narrow(2, dx, w)));
}

/** Accuracy of always answering the most frequent class (what "above chance" is measured against). */
function majorityShare(ds: ImageDataset, indices: number[]): number {
  const labels = ds.labels.data() as BigInt64Array;
  const counts = new Map<bigint, number>();
  for (const i of indices) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  return Math.max(...counts.values()) / indices.length;
}

function positiveInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${what} must be a positive integer, got ${v}`);
  return v;
}
