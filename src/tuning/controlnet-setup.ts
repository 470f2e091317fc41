// What a ControlNet run trains on: the base DiT wrapped as a DiT-ControlNet (base frozen), the
// target images with their conditions, and for Diff-Tuning the knowledge bank of the base model's
// samples with the conditions extracted from them. Conditions are computed on the fly from each
// batch (after its flips, so image and condition always agree) and packed after the image channels
// of x; the trainer's ModelPlugin splits them off again (see trainer.ts).
import * as path from 'path';
import { BatchSource } from '../data/batch-iterator';
import { conditionChannels, ConditionKind, extractCondition } from '../data/conditions';
import { sha256File } from '../data/hash';
import { ImageDataset } from '../data/image-dataset';
import { splitIndices } from '../data/split';
import { DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED } from '../eval/reference-stats';
import { DiT } from '../models/dit';
import { DiTControlNet, saveDiTControlNet } from '../models/dit-controlnet';
import { loadDiT, readDiTConfig } from '../models/dit-io';
import { imageGridPng } from '../report/grid';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { verifyBank } from './bank';
import { ConfigError } from './config-schema';
import { TrainConfig, usesBank } from './config';
import { ControlNetSettings } from './controlnet-config';
import { ConvergenceDetector } from './convergence';
import { ImageSink } from './previews';
import { RunInputs } from './setup';
import { ModelPlugin } from './trainer';
import { writeFileAtomic } from './write-atomic';

/** How a source's images get their condition: extracted from the image, or all zeros (the paper's alternative for replay). */
export type ConditionPolicy = { kind: 'extract'; condition: ConditionKind } | { kind: 'zero'; channels: number };

/** The channels a policy produces. */
export function policyChannels(p: ConditionPolicy): number {
  return p.kind === 'extract' ? conditionChannels(p.condition) : p.channels;
}

/**
 * Image batches with their condition packed behind the image channels: x = [B, 3 + C, H, W].
 * `label` maps an image's class to the label the model sees (the null label, or the class itself).
 */
export class ConditionedSource implements BatchSource {
  constructor(readonly images: BatchSource, readonly policy: ConditionPolicy, readonly label: (cls: number) => number) {}

  get length(): number {
    return this.images.length;
  }

  batch(indices: ArrayLike<number>, flip?: ArrayLike<boolean>): { x: Tensor; y: Tensor } {
    return torch.scope(() => {
      const b = this.images.batch(indices, flip);
      const p = this.policy;
      const cond = p.kind === 'extract' ? extractCondition(p.condition, b.x) : torch.zeros([b.x.shape[0], p.channels, b.x.shape[2], b.x.shape[3]]);
      const labels = Array.from(b.y.data() as BigInt64Array, (v) => this.label(Number(v)));
      return { x: torch.cat([b.x, cond.to({ dtype: b.x.dtype })], 1), y: torch.tensor(labels, { dtype: 'int64' }) };
    });
  }
}

/** The trainer plugin of a DiT-ControlNet: splits the packed condition off and feeds it to the branch. */
export function controlNetPlugin(model: DiTControlNet, o: { out: string; method: string; preview?: ConvergenceDetector | null; previewCount?: number }): ModelPlugin {
  const imageChannels = model.config.inChannels;
  const condChannels = model.control.conditionChannels;
  return {
    split: (x) => {
      if (x.shape[1] !== imageChannels + condChannels) {
        throw new Error(`ControlNet batch: expected ${imageChannels} image + ${condChannels} condition channels, got ${x.shape[1]}`);
      }
      return { x: x.slice(1, 0, imageChannels), extra: x.slice(1, imageChannels, imageChannels + condChannels) };
    },
    forward: (xt, t, y, extra) => model.forward(xt, t, y, { condition: extra }),
    preview: o.preview ? (step, sink) => renderControlPreview(model, o.preview!, o.out, step, o.previewCount ?? 8, sink) : undefined,
    exportModel: () => {
      const file = path.join(o.out, 'model.safetensors');
      saveDiTControlNet(file, model, { method: o.method, condition: model.control.condition ?? '' });
      return file;
    },
  };
}

/** previews/step-N.png: the fixed conditions (top row) and the model's samples for them (below). */
export function renderControlPreview(model: DiTControlNet, detector: ConvergenceDetector, out: string, step: number, count: number, sink?: ImageSink): string {
  const n = Math.min(count, detector.conditions.shape[0]);
  const png = torch.scope(() => {
    const cond = detector.conditions.slice(0, 0, n);
    const condRgb = cond.shape[1] === 1 ? cond.expand([n, 3, cond.shape[2], cond.shape[3]]) : cond;
    const samples = detector.sample(model).slice(0, 0, n);
    return imageGridPng(torch.cat([condRgb, samples], 0), n, 2, Math.max(1, Math.floor(64 / model.config.inputSize)));
  });
  const file = path.join(out, 'previews', `step-${String(step).padStart(8, '0')}.png`);
  writeFileAtomic(file, png);
  sink?.image('preview', png, png.readUInt32BE(16), png.readUInt32BE(20), step);
  return file;
}

export interface ControlNetInputs {
  inputs: RunInputs;
  model: DiTControlNet;
  /** Held-out real images of the target (the convergence detector's fixed conditions come from them). */
  heldOut: ImageDataset;
  /** The label of every sample the detector draws. */
  evalLabel: (cls: number) => number;
}

function freeModel(m: DiT): void {
  for (const t of m.stateDict().values()) t.dispose();
}

/**
 * Loads the base, wraps it, and reads the data. Held-out images: the target's seeded eval split
 * (the one `difftune eval --ref DIR:eval` uses); with data.split 'all' they are also trained on.
 */
export async function prepareControlNetInputs(c: TrainConfig, cn: ControlNetSettings, log: (m: string) => void = console.log): Promise<ControlNetInputs> {
  const ckpt = c.model.ckpt!;
  const { model: base, warnings } = loadDiT(ckpt, { config: c.model.config ? readDiTConfig(c.model.config) : undefined, skipUnknown: c.model.skipUnknown });
  for (const w of warnings) log(`warning: ${w}`);
  const where = 'config';
  if (base.config.inChannels !== 3) throw new ConfigError(where, 'model.ckpt', `takes ${base.config.inChannels} input channels; a DiT-ControlNet here trains on RGB image folders (3)`);
  const resolution = c.data.resolution ?? base.config.inputSize;
  if (resolution !== base.config.inputSize) throw new ConfigError(where, 'data.resolution', `is ${resolution} but the model's input size is ${base.config.inputSize}`);
  const nullLabel = base.config.numClasses;
  if (cn.labels === 'null' && base.config.classDropoutProb <= 0) {
    throw new ConfigError(where, 'controlnet.labels', `is "null" but ${ckpt} has no null label (class_dropout_prob 0); use "reuse"`);
  }
  const policy: ConditionPolicy = { kind: 'extract', condition: cn.condition };
  const blocks = cn.blocks ?? Math.max(1, Math.floor(base.config.depth / 2));
  if (blocks > base.config.depth) throw new ConfigError(where, 'controlnet.blocks', `is ${blocks} but the base has ${base.config.depth} blocks`);
  const model = DiTControlNet.fromBase(base, { numBlocks: blocks, conditionChannels: policyChannels(policy), condition: cn.condition });
  freeModel(base);

  const warn = (m: string): void => log(`warning: ${m}`);
  const all = await ImageDataset.fromFolder(c.data.target!, { resolution, onError: c.data.onError, warn });
  const split = splitIndices(all.length, { evalFraction: DEFAULT_EVAL_FRACTION, seed: DEFAULT_SPLIT_SEED });
  const heldOut = all.subset(split.eval);
  let target = all;
  if (c.data.split === 'train') {
    target = all.subset(split.train);
    all.dispose();
  }
  const numClasses = model.config.numClasses;
  const label = cn.labels === 'null' ? () => nullLabel : (k: number) => {
    if (k >= numClasses) throw new Error(`controlnet.labels "reuse": target class ${k} has no row in the base's ${numClasses}-class table`);
    return k;
  };
  if (cn.labels === 'reuse' && target.classes.length > numClasses) {
    throw new ConfigError(where, 'controlnet.labels', `is "reuse" but the target has ${target.classes.length} classes and the base ${numClasses}`);
  }
  log(`target data: ${target.length} images in ${target.classes.length} classes from ${c.data.target}${c.data.split === 'train' ? ' (train split)' : ''}; ` +
    `${heldOut.length} held out for the convergence metric; condition ${cn.condition} (${policyChannels(policy)} channels)`);

  const pretrainedSha256 = sha256File(ckpt);
  let bank: BatchSource | null = null;
  if (usesBank(c.method)) {
    const dir = c.data.bank!;
    const manifest = verifyBank(dir, { modelSha256: pretrainedSha256 });
    if (manifest.storage !== 'png') throw new ConfigError(where, 'data.bank', `${dir} stores latents; a pixel DiT-ControlNet replays a PNG bank`);
    const images = await ImageDataset.fromFolder(dir, { resolution, onError: c.data.onError, warn });
    const replayPolicy: ConditionPolicy = cn.replayCondition === 'zero' ? { kind: 'zero', channels: policyChannels(policy) } : policy;
    // The trainer gives replay samples the null label whatever the source says.
    bank = new ConditionedSource(images, replayPolicy, () => nullLabel);
    log(`knowledge bank: ${images.length} samples from ${path.resolve(dir)}, condition ${cn.replayCondition}`);
  }
  const inputs: RunInputs = {
    model, target: new ConditionedSource(target, policy, label), classes: target.classes, bank,
    flipTarget: c.data.flip, flipBank: c.data.flip, pretrainedSha256, evaluator: null,
  };
  return { inputs, model, heldOut, evalLabel: label };
}
