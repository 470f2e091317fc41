// The benchmark's forgetting curve (the paper's Figure 1): one fine-tuned model's reverse chain
// with the pretrained model taking over the last part (the data end), FID at each switch point.
// Written to OUT/forgetting/ (curve.json, forgetting.svg/.png, a sample grid) and reused while
// its key (the fine-tuned run's key and the probe's settings) is unchanged.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { createDiffusion } from '../../src/diffusion/create';
import { ConditionalDenoiser } from '../../src/diffusion/hybrid-sampler';
import { loadExtractor } from '../../src/eval/extractor';
import { runForgettingProbe, writeForgettingReport } from '../../src/eval/forgetting';
import { referenceStats, ReferenceSpec } from '../../src/eval/reference-stats';
import { DiT } from '../../src/models/dit';
import { loadDiT } from '../../src/models/dit-io';
import { Device } from '../../src/torch';
import { monotoneRise } from './aggregate';
import { readJsonFile } from './job';
import { evalLabels } from './sample-fid';

export interface ForgettingRequest {
  /** The fine-tuned run: its id and key (what the curve is of). */
  runId: string;
  runKey: string;
  source: string;
  sourceConfig: string | null;
  finetuned: string;
  ref: ReferenceSpec;
  samples: number;
  splits: number[];
  steps: number;
  cfg: number;
  batch: number;
  seed: number;
  device: Device;
  extractor: string;
  outDir: string;
  log: (m: string) => void;
}

export interface ForgettingSummary {
  key: string;
  run: string;
  metric: string;
  samples: number;
  /** Fraction of the reverse steps, from the data end, run by the pretrained model. */
  splits: number[];
  fid: number[];
  /** Whether FID never decreases as the pretrained model takes over more of the chain toward the noise end. */
  monotone: boolean;
  decreases: number;
  seconds: number;
}

function probeKey(r: Pick<ForgettingRequest, 'runKey' | 'samples' | 'splits' | 'steps' | 'cfg' | 'seed' | 'extractor'>): string {
  const identity = { run: r.runKey, samples: r.samples, splits: r.splits, steps: r.steps, cfg: r.cfg, seed: r.seed, extractor: r.extractor };
  return crypto.createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 24);
}

function denoiser(m: DiT): ConditionalDenoiser {
  return { forward: (x, t, y) => m.forward(x, t, y), numClasses: m.config.numClasses, nullLabel: m.config.numClasses };
}

/** The curve already in r.outDir when it was made with r's settings, else null. */
export function savedForgettingCurve(r: Pick<ForgettingRequest, 'outDir' | 'runKey' | 'samples' | 'splits' | 'steps' | 'cfg' | 'seed' | 'extractor'>): ForgettingSummary | null {
  const curveFile = path.join(r.outDir, 'curve.json');
  if (!fs.existsSync(curveFile)) return null;
  const saved = readJsonFile<{ summary?: ForgettingSummary }>(curveFile, 'forgetting curve');
  return saved.summary?.key === probeKey(r) ? saved.summary : null;
}

export async function forgettingCurve(r: ForgettingRequest): Promise<ForgettingSummary> {
  const key = probeKey(r);
  const saved = savedForgettingCurve(r);
  if (saved) {
    r.log(`forgetting curve: reusing ${path.join(r.outDir, 'curve.json')}`);
    return saved;
  }
  const started = Date.now();
  const pretrained = loadDiT(r.source, { configFile: r.sourceConfig ?? undefined, device: r.device }).model.eval();
  const finetuned = loadDiT(r.finetuned, { device: r.device }).model.eval();
  const extractor = loadExtractor(r.extractor, { device: r.device });
  const diffusion = createDiffusion({ timestepRespacing: String(r.steps), learnSigma: finetuned.config.learnSigma });
  try {
    const reference = await referenceStats(r.ref, extractor, { resolution: finetuned.config.inputSize, log: r.log, warn: (m) => r.log(`warning: ${m}`) });
    reference.features.dispose();
    const s = finetuned.config.inputSize;
    const result = runForgettingProbe({
      pretrained: denoiser(pretrained), finetuned: denoiser(finetuned), imageShape: [3, s, s], diffusion, sampler: 'ddim',
      splits: r.splits, labels: evalLabels(r.ref, r.samples), cfgScale: r.cfg, extractor, reference: reference.stats,
      batchSize: r.batch, seed: r.seed, device: r.device, directions: ['finetuned-then-pretrained'], previews: 8, log: r.log,
    });
    const points = result.curves['finetuned-then-pretrained']!;
    const fid = points.map((p) => p.fid);
    const rise = monotoneRise(fid);
    const summary: ForgettingSummary = {
      key, run: r.runId, metric: result.metric, samples: r.samples, splits: points.map((p) => p.split), fid,
      monotone: rise.monotone, decreases: rise.decreases, seconds: (Date.now() - started) / 1000,
    };
    try {
      await writeForgettingReport(r.outDir, result, { summary, finetuned: r.finetuned, sampler: `ddim${r.steps}`, cfg: r.cfg });
    } finally {
      for (const t of Object.values(result.previews)) t?.dispose();
    }
    return summary;
  } finally {
    diffusion.dispose();
    extractor.dispose();
    pretrained.dispose();
    finetuned.dispose();
  }
}
