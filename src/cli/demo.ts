// `difftune demo`: the Diff-Tuning demo (src/demo/pipeline.ts). With no arguments it builds the
// target data, loads the shipped source model, samples a knowledge bank, fine-tunes with full
// fine-tuning and with Diff-Tuning, evaluates both, runs the chain-of-forgetting probe and writes
// demo-out/report/index.html. `--quick` is a pipeline check within 3 minutes on 2 CPU cores.
import * as path from 'path';
import { pathToFileURL } from 'url';
import { runDemoPipeline } from '../demo/pipeline';
import { defaultSettings, DemoSettings, ForgettingModel } from '../demo/settings';
import { scaledEmaDecay } from '../tuning/ema-budget';
import { formatSeconds } from '../demo/step-timer';
import { parseFlags } from './args';
import { configureThreads } from './threads';

const SUMMARY = 'The Diff-Tuning demo: fine-tune the shipped source DiT on a small target set with full fine-tuning and with ' +
  'Diff-Tuning (same budget and seed), compare FID/KID, draw the chain-of-forgetting curve, and write an HTML report. ' +
  'Default budget: 10-15 minutes on 2 CPU cores; --quick: 2-3 minutes. The bank and the runs are cached in --out, so a rerun reuses or resumes them.';

/** Flags with the default (and --quick) budget in their help. */
function flagSpec(quick: boolean) {
  const d = defaultSettings(quick);
  const q = defaultSettings(true);
  const f = defaultSettings(false);
  const both = (a: number | string, b: number | string): string => (a === b ? '' : `; --quick: ${b}`);
  return {
    quick: { type: 'boolean', default: false, help: 'a pipeline check within ~3 minutes (smaller bank, steps and sample counts)' },
    out: { type: 'string', default: d.out, help: 'output folder (data subsets, bank, runs, samples, report/)' },
    source: { type: 'string', default: path.relative(process.cwd(), d.source) || d.source, help: 'pretrained source DiT (.safetensors with its .json beside it)' },
    dataset: { type: 'string', default: d.dataset, help: 'target dataset name (`difftune datasets list`); built offline when --data is missing' },
    data: { type: 'string', default: '', help: 'target dataset folder (default data/<dataset> in the repository)' },
    'train-images': { type: 'number', default: d.trainImages, help: 'training images, stratified by class (the paper\'s few-shot regime); all others are held out for FID' },
    steps: { type: 'number', default: d.finetune.steps, help: `fine-tuning steps of each method${both(f.finetune.steps, q.finetune.steps)}` },
    batch: { type: 'number', default: d.finetune.batch, help: 'fine-tuning batch (Diff-Tuning: 80% target + 20% replay)' },
    lr: { type: 'number', default: d.finetune.lr, help: 'AdamW learning rate of both methods' },
    ema: { type: 'string', default: 'auto', help: "EMA decay; 'auto': 0.9999^(24000/steps), the reference's share of pretrained weights at the end of a short run (0.9999 itself would keep them)" },
    tau: { type: 'number', default: d.finetune.tau, help: 'Diff-Tuning power τ of ψ(t) ∝ (t+1)^τ and ξ(t) ∝ (T−t)^τ' },
    'grad-clip': { type: 'number', default: d.finetune.gradClip, help: 'gradient-norm clipping of both methods' },
    bank: { type: 'number', default: d.bank.n, help: `knowledge-bank size${both(f.bank.n, q.bank.n)}` },
    'bank-steps': { type: 'number', default: d.bank.steps, help: `DDIM steps of the bank samples${both(f.bank.steps, q.bank.steps)}` },
    'bank-cfg': { type: 'number', default: d.bank.cfg, help: 'guidance scale of the bank samples' },
    'eval-samples': { type: 'number', default: d.evaluation.samples, help: `samples per model for FID/KID${both(f.evaluation.samples, q.evaluation.samples)}` },
    'eval-steps': { type: 'number', default: d.evaluation.steps, help: `DDIM steps of the evaluation samples${both(f.evaluation.steps, q.evaluation.steps)}` },
    cfg: { type: 'number', default: d.evaluation.cfg, help: 'guidance scale of the evaluation and forgetting samples' },
    'forgetting-splits': { type: 'string', default: d.forgetting.splits.join(','), help: `switch points of the forgetting probe (share of DDIM steps handed to the pretrained model)${both(f.forgetting.splits.join(','), q.forgetting.splits.join(','))}` },
    'forgetting-samples': { type: 'number', default: d.forgetting.samples, help: `samples per switch point${both(f.forgetting.samples, q.forgetting.samples)}` },
    'forgetting-steps': { type: 'number', default: d.forgetting.steps, help: `DDIM steps of the forgetting probe${both(f.forgetting.steps, q.forgetting.steps)}` },
    'forgetting-model': { type: 'string', default: d.forgetting.model, help: "the fine-tuned model of the probe: 'full' (the paper's Figure 1) or 'diff-tuning'" },
    'grid-images': { type: 'number', default: d.gridImages, help: `samples per model in the report's grids${both(f.gridImages, q.gridImages)}` },
    extractor: { type: 'string', default: d.extractor, help: "FID/KID features: 'iconnet' (shipped weights) or 'iconnet:FILE'" },
    seed: { type: 'number', default: d.seed, help: 'seed of the training subset, bank, fine-tuning and samples' },
  } as const;
}

function parseSplits(text: string): number[] {
  return text.split(',').map((p) => {
    const v = Number(p.trim());
    if (p.trim() === '' || !Number.isFinite(v)) throw new Error(`demo: --forgetting-splits: '${p}' is not a number (expected fractions like 0,0.5,1)`);
    return v;
  }).sort((a, b) => a - b);
}

function parseEma(text: string, steps: number): number {
  if (text === 'auto') return scaledEmaDecay(steps);
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v)) throw new Error(`demo: --ema must be a number in [0, 1) or 'auto', got '${text}'`);
  return v;
}

/** The settings a command line asks for (--quick changes the defaults of the budget flags). */
export function demoSettingsFromArgs(argv: string[]): DemoSettings | null {
  const quick = argv.some((a) => a === '--quick' || a === '--quick=true');
  const flags = parseFlags('demo', SUMMARY, flagSpec(quick), argv);
  if (!flags) return null;
  const d = defaultSettings(quick);
  return {
    ...d,
    out: flags.out,
    source: path.resolve(flags.source),
    dataset: flags.dataset,
    dataDir: flags.data,
    trainImages: flags['train-images'],
    seed: flags.seed,
    bank: { ...d.bank, n: flags.bank, steps: flags['bank-steps'], cfg: flags['bank-cfg'] },
    finetune: { steps: flags.steps, batch: flags.batch, lr: flags.lr, emaDecay: parseEma(flags.ema, flags.steps), tau: flags.tau, gradClip: flags['grad-clip'] },
    evaluation: { ...d.evaluation, samples: flags['eval-samples'], steps: flags['eval-steps'], cfg: flags.cfg },
    forgetting: {
      splits: parseSplits(flags['forgetting-splits']), samples: flags['forgetting-samples'], steps: flags['forgetting-steps'],
      model: flags['forgetting-model'] as ForgettingModel,
    },
    gridImages: flags['grid-images'],
    extractor: flags.extractor,
  };
}

export async function runDemo(argv: string[]): Promise<void> {
  const settings = demoSettingsFromArgs(argv);
  if (!settings) return;
  configureThreads();
  console.log(`difftune demo${settings.quick ? ' --quick' : ''}: Diff-Tuning vs full fine-tuning, output in ${path.resolve(settings.out)}`);
  const result = await runDemoPipeline(settings);
  const url = pathToFileURL(result.reportFile).href;
  const m = result.metrics;
  console.log(`\nFID: pretrained ${m.pretrained.fid.toFixed(2)}, full ${m.full.fid.toFixed(2)}, Diff-Tuning ${m['diff-tuning'].fid.toFixed(2)} ` +
    `(relative promotion ${(100 * result.promotion).toFixed(1)}%)`);
  console.log(`done in ${formatSeconds(result.seconds)}. The report: ${result.reportFile}`);
  console.log(`open it with:  xdg-open ${result.reportFile}   (or in a browser: ${url})`);
}
