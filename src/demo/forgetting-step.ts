// The demo's chain-of-forgetting curve (src/eval/forgetting.ts, one direction: the fine-tuned model
// on the noisy part, the pretrained model's unconditional branch at the data end), written with its
// sample grid under OUT/report/forgetting/.
import { createDiffusion } from '../diffusion/create';
import { ConditionalDenoiser } from '../diffusion/hybrid-sampler';
import { ForgettingPoint, ForgettingReportFiles, runForgettingProbe, writeForgettingReport } from '../eval/forgetting';
import { DiT } from '../models/dit';
import { DemoExtractor, Reference } from './metrics';
import { DemoSettings } from './settings';

const DIRECTION = 'finetuned-then-pretrained';

function denoiser(model: DiT): ConditionalDenoiser {
  const c = model.config;
  return { forward: (x, t, y) => model.forward(x, t, y), numClasses: c.numClasses, nullLabel: c.classDropoutProb > 0 ? c.numClasses : null };
}

export interface ForgettingStepOptions {
  settings: DemoSettings;
  pretrained: DiT;
  finetuned: DiT;
  /** Target label of each sample of a run. */
  labels: number[];
  extractor: DemoExtractor;
  reference: Reference;
  dir: string;
  log: (m: string) => void;
}

export async function demoForgetting(o: ForgettingStepOptions): Promise<{ points: ForgettingPoint[]; files: ForgettingReportFiles }> {
  const s = o.settings;
  const c = o.finetuned.config;
  const diffusion = createDiffusion({ timestepRespacing: String(s.forgetting.steps), learnSigma: c.learnSigma });
  try {
    const result = runForgettingProbe({
      pretrained: denoiser(o.pretrained.eval()), finetuned: denoiser(o.finetuned.eval()), imageShape: [c.inChannels, c.inputSize, c.inputSize],
      diffusion, sampler: 'ddim', splits: [...s.forgetting.splits].sort((a, b) => a - b), labels: o.labels,
      cfgScale: s.evaluation.cfg, pretrainedLabels: 'null', extractor: o.extractor, reference: o.reference.stats,
      batchSize: s.evaluation.batch, seed: s.seed + 2, directions: [DIRECTION], previews: 8, log: (m) => o.log(`    ${m}`),
    });
    try {
      const files = await writeForgettingReport(o.dir, result, {
        finetuned: s.forgetting.model, samples: o.labels.length, steps: s.forgetting.steps, cfg: s.evaluation.cfg, pretrainedLabel: 'null',
      });
      return { points: result.curves[DIRECTION] ?? [], files };
    } finally {
      for (const t of Object.values(result.previews)) t?.dispose();
    }
  } finally {
    diffusion.dispose();
  }
}
