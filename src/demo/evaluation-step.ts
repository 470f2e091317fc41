// The demo's evaluation: one sample set per model (same labels, same x_T), FID/KID against the
// held-out images, the raw samples as OUT/samples/<model>.safetensors (for `difftune eval`), and
// the report's grids: the first samples of each set sorted by class, and real training images of
// the same classes in the same order.
import * as fs from 'fs';
import * as path from 'path';
import { decodeImageFiles } from '../eval/reference-stats';
import { DiT } from '../models/dit';
import { imageGridPng } from '../report/grid';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { writeFileAtomic } from '../tuning/write-atomic';
import { DemoExtractor, Reference, SampleMetrics, sampleMetrics } from './metrics';
import { sampleSet } from './sample-set';
import { DemoSettings } from './settings';
import { formatSeconds } from './step-timer';
import { TargetSplit } from './target-data';

export type EvaluatedModel = 'pretrained' | 'full' | 'diff-tuning';

/** Evaluation indices shown in the grids: the first n, ordered by class so a row reads class by class. */
export function gridIndices(labels: readonly number[], n: number): number[] {
  return Array.from({ length: Math.min(n, labels.length) }, (_, i) => i).sort((a, b) => labels[a] - labels[b] || a - b);
}

/** A grid of [-1, 1] images, 8 per row, small images enlarged to ~64 px. */
function writeGrid(file: string, images: Tensor): void {
  writeFileAtomic(file, imageGridPng(images, 8, 2, Math.max(1, Math.floor(64 / images.shape[3]))));
}

export interface EvaluationOptions {
  settings: DemoSettings;
  extractor: DemoExtractor;
  reference: Reference;
  split: TargetSplit;
  /** Label of each evaluation sample, and the samples shown in the grids. */
  labels: number[];
  gridOrder: number[];
  /** The models, loaded lazily and freed by the caller. */
  model: (which: EvaluatedModel) => DiT;
  names: Record<EvaluatedModel, string>;
  samplesDir: string;
  reportDir: string;
  log: (m: string) => void;
}

export async function demoEvaluation(o: EvaluationOptions): Promise<Record<EvaluatedModel, SampleMetrics>> {
  const s = o.settings;
  fs.mkdirSync(o.samplesDir, { recursive: true });
  const metrics = {} as Record<EvaluatedModel, SampleMetrics>;
  for (const which of ['pretrained', 'full', 'diff-tuning'] as const) {
    const t0 = Date.now();
    const x = sampleSet(o.model(which), {
      labels: o.labels, seed: s.seed + 1, steps: s.evaluation.steps, cfg: s.evaluation.cfg, batchSize: s.evaluation.batch, label: `sample ${which}`,
    });
    try {
      const m = sampleMetrics(o.extractor, x, o.reference, s.seed);
      metrics[which] = m;
      torch.scope(() => torch.saveSafetensors(path.join(o.samplesDir, `${which}.safetensors`), {
        samples: x, labels: torch.tensor(o.labels, { dtype: 'int64' }),
      }, { model: which, classes: JSON.stringify(o.split.classes) }));
      torch.scope(() => writeGrid(path.join(o.reportDir, `samples-${which}.png`), x.indexSelect(0, torch.tensor(o.gridOrder, { dtype: 'int64' }))));
      o.log(`    ${o.names[which].padEnd(16)} FID ${m.fid.toFixed(2)}  KID ${m.kid.toFixed(4)} ± ${m.kidStd.toFixed(4)}  (${formatSeconds((Date.now() - t0) / 1000)})`);
    } finally {
      x.dispose();
    }
  }
  // Real images of the same classes, in the same order, from the training set.
  const byClass = o.split.classes.map((_, k) => o.split.train.filter((it) => it.label === k));
  const used = o.split.classes.map(() => 0);
  const files = o.gridOrder.map((i) => {
    const k = o.labels[i];
    return byClass[k][used[k]++ % byClass[k].length].file;
  });
  const real = await decodeImageFiles(files, o.reference.resolution);
  try {
    torch.scope(() => writeGrid(path.join(o.reportDir, 'real-target.png'), real.float().div(127.5).sub(1)));
  } finally {
    real.dispose();
  }
  return metrics;
}
