// The benchmark's settings: a budget preset (quick | cpu | gpu) fills every number, flags override
// any of them. Pure: parseSettings(argv) is tested without running anything.
import { Args } from '../args';
import { isMethodName, METHOD_NAMES, MethodName } from './methods';

export const PARTS = ['table', 'tau', 'bank', 'forgetting'] as const;
export type Part = (typeof PARTS)[number];
export const BUDGETS = ['quick', 'cpu', 'gpu', 'testbed'] as const;
export type Budget = (typeof BUDGETS)[number];
export const DEFAULT_TARGETS = ['twemoji', 'flags', 'oxygen', 'openclipart', 'crawl-textures'];
export const DEFAULT_SOURCE = 'assets/source/iconnet-dit.safetensors';
/** The testbed (the testbed issue): a source that passes its gate, small targets, long runs, held-out evaluation. */
export const TESTBED_SOURCE = 'assets/source/fashion-dit.safetensors';
export const TESTBED_TARGETS = ['mnist', 'openclipart', 'crawl-textures'];

/** The numbers a budget fixes. */
export interface BudgetNumbers {
  steps: number;
  seeds: number;
  trainSize: number;
  bankSize: number;
  /** DDIM steps of the knowledge bank's sampling. */
  bankSteps: number;
  evalSamples: number;
  /** DDIM steps of the evaluation samples (and of the forgetting probe). */
  evalSteps: number;
  tauValues: number[];
  bankSizes: number[];
  /** Seeds of the tau and bank sweeps (the first of the table's seeds). */
  sweepSeeds: number;
  forgettingSamples: number;
  forgettingSplits: number[];
  /** Train on a subset folder of trainSize images and evaluate against every other image of the target (else: the eval split). */
  heldout: boolean;
  /** Targets converted to grey (a grey source). */
  grey: boolean;
  /** In-loop FID evaluations along each run (EMA weights; 0: final only). */
  curvePoints: number;
  curveSamples: number;
  /** The knowledge bank's sampler: 'ddpm' (the reference's sample_ddp.py) or 'ddim'. */
  bankSampler: 'ddpm' | 'ddim';
  /** Also evaluate the final EMA without guidance and the final raw weights with guidance. */
  finalVariants: boolean;
}

const OLD_PROTOCOL = { heldout: false, grey: false, curvePoints: 0, curveSamples: 0, bankSampler: 'ddim' as const, finalVariants: false };

const TENTHS = Array.from({ length: 11 }, (_, i) => i / 10);
const TAUS = [0, 0.5, 1, 1.5, 2];

/** Steps of a testbed run: sized by the pilot in bench/results/testbed-pilot.md so full fine-tuning saturates. */
const TESTBED_STEPS = 3000;

/**
 * quick: proves the pipeline end to end in minutes (its numbers mean nothing);
 * cpu: the shipped source model (DiT hidden 192, depth 6, patch 4) on 2 idle CPU cores in about
 *   8-14 hours (0.3-0.5 s per training step at batch 32; 5 targets x 4 methods x 3 seeds + ablation
 *   + sweeps with one seed: 72 fine-tunes of 1000 steps, 77 evaluations of 500 samples);
 * gpu: longer runs and more samples, for one GPU (not timed yet);
 * testbed: the Fashion-MNIST source (grey, 28x28) on grey targets of a few hundred training images,
 *   trained long enough to saturate, FID along each run and at the end (1,000 samples, EMA with and
 *   without guidance, raw weights) against every held-out target image; the bank sampled as the
 *   reference does (DDPM 250, guidance 1.5).
 */
export const PRESETS: Record<Budget, BudgetNumbers> = {
  quick: {
    steps: 20, seeds: 1, trainSize: 64, bankSize: 32, bankSteps: 10, evalSamples: 64, evalSteps: 10,
    tauValues: TAUS, bankSizes: [0, 16, 32], sweepSeeds: 1, forgettingSamples: 64, forgettingSplits: [0, 0.25, 0.5, 0.75, 1], ...OLD_PROTOCOL,
  },
  cpu: {
    steps: 1000, seeds: 3, trainSize: 500, bankSize: 1024, bankSteps: 25, evalSamples: 500, evalSteps: 25,
    tauValues: TAUS, bankSizes: [0, 64, 256, 1024], sweepSeeds: 1, forgettingSamples: 500, forgettingSplits: TENTHS, ...OLD_PROTOCOL,
  },
  gpu: {
    steps: 5000, seeds: 3, trainSize: 500, bankSize: 1024, bankSteps: 50, evalSamples: 2000, evalSteps: 50,
    tauValues: TAUS, bankSizes: [0, 64, 256, 1024], sweepSeeds: 3, forgettingSamples: 2000, forgettingSplits: TENTHS, ...OLD_PROTOCOL,
  },
  testbed: {
    steps: TESTBED_STEPS, seeds: 3, trainSize: 300, bankSize: 1024, bankSteps: 250, evalSamples: 1000, evalSteps: 25,
    tauValues: TAUS, bankSizes: [0, 64, 256, 1024], sweepSeeds: 3, forgettingSamples: 1000, forgettingSplits: TENTHS,
    heldout: true, grey: true, curvePoints: 5, curveSamples: 500, bankSampler: 'ddpm', finalVariants: true,
  },
};

export interface BenchSettings extends BudgetNumbers {
  budget: Budget;
  source: string;
  /** The source's config JSON (default: beside the weights). */
  sourceConfig: string | null;
  targets: string[];
  /** Methods the table part runs (default all; the pretrained row is always measured). */
  methods: MethodName[];
  /** Where target folders live: DATA_ROOT/<target>. */
  dataRoot: string;
  parts: Part[];
  device: string;
  /** transfer.json, transfer.md, the results log and the forgetting plot. */
  out: string;
  /** Banks and run folders (large; not for committing). */
  work: string;
  batch: number;
  /** Seed of the training subsample (fixed: every method and seed trains on the same images). */
  subsetSeed: number;
  /** Guidance scale of the bank and of the evaluation samples. */
  cfg: number;
  evalBatch: number;
  ablationTarget: string;
  sweepTarget: string;
  extractor: string;
  /** Keep every run's model.safetensors (default: only the one the forgetting curve probes). */
  keepModels: boolean;
  /** Bank items in each run's EWC Fisher (0: no EWC). */
  ewcItems: number;
  /** Print the plan (runs, steps, samples) and stop. */
  dryRun: boolean;
  /** Write the tables from the runs already in the log, run nothing. */
  reportOnly: boolean;
}

export const USAGE = `usage: npm run bench:transfer -- [flags]
  --budget quick|cpu|gpu|testbed   preset of every number below (default: gpu with --device cuda, else cpu);
                            testbed also sets the source (${TESTBED_SOURCE}), targets (${TESTBED_TARGETS.join(',')}),
                            the fashion extractor and the held-out protocol below
  --source FILE             source DiT weights (.safetensors + .json beside it; default ${DEFAULT_SOURCE})
  --source-config FILE      its config JSON when not beside it
  --targets a,b,...         target datasets under --data-root (default ${DEFAULT_TARGETS.join(',')})
  --data-root DIR           default data
  --only table,tau,bank,forgetting   parts to run (default all)
  --methods a,b,...         table methods to run, of ${METHOD_NAMES.join(', ')} (default all)
  --device cpu|cuda|cuda:N  default cuda when available, else cpu
  --out DIR                 results: transfer.json, transfer.md, runs.jsonl, forgetting/ (default bench/results)
  --work DIR                banks and run folders (default runs/bench-transfer)
  --steps N --seeds K --batch B --train-size N --subset-seed S
  --bank-size N --bank-steps N --cfg S
  --eval-samples N --eval-steps N --eval-batch N --extractor iconnet|fashion|iconnet:FILE|inception:FILE
  --ablation-target NAME --sweep-target NAME (default the first target)
  --tau-values 0,0.5,1,1.5,2 --bank-sizes 0,64,256,1024 --sweep-seeds K
  --forgetting-samples N --forgetting-splits 0,0.1,...,1
  --keep-models             keep every run's model.safetensors (default: only the forgetting curve's)
  --ewc-items N             bank items in the Fisher of each run's EWC against the source (default 256; 0: no EWC)
  --heldout / --no-heldout  train on a subset folder of --train-size images, evaluate on every other image of the target
  --grey / --no-grey        convert the targets to grey (for a grey source)
  --curve-points N --curve-samples N   FID evaluations along each run (EMA, DDIM --eval-steps; 0: final only)
  --bank-sampler ddpm|ddim  the bank's sampler (ddpm: the reference's sample_ddp.py)
  --final-variants / --no-final-variants   also evaluate the final EMA at guidance 1 and the raw weights
  --dry-run                 print the plan and stop
  --report-only             write transfer.json/.md from the finished runs in the log; run nothing`;

function numberList(text: string, what: string, o: { integer?: boolean; min?: number; max?: number } = {}): number[] {
  const values = text.split(',').map((s) => s.trim());
  const out = values.map((s) => {
    const v = Number(s);
    const ok = s !== '' && Number.isFinite(v) && (!o.integer || Number.isInteger(v)) && (o.min === undefined || v >= o.min) && (o.max === undefined || v <= o.max);
    if (!ok) {
      const range = `${o.min !== undefined ? ` >= ${o.min}` : ''}${o.max !== undefined ? ` <= ${o.max}` : ''}`;
      throw new Error(`${what}: '${s}' is not ${o.integer ? 'an integer' : 'a number'}${range}`);
    }
    return v;
  });
  if (new Set(out).size !== out.length) throw new Error(`${what}: a value is given twice (${text})`);
  return out;
}

/** Settings from the command line; `cudaAvailable` picks the default device and budget. */
export function parseSettings(argv: readonly string[], o: { cudaAvailable: boolean }): BenchSettings {
  const fail = (msg: string): never => { throw new Error(msg); };
  const args = new Args([...argv], fail);
  const given: Partial<BenchSettings> = {};
  let budget: Budget | undefined;
  const nonNegative = (s: string, what: string): number => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isInteger(n) || n < 0) fail(`${what} must be an integer >= 0, got '${s}'`);
    return n;
  };
  for (let f = args.flag(); f !== undefined; f = args.flag()) {
    switch (f) {
      case '--budget': budget = args.choice(BUDGETS); break;
      case '--source': given.source = args.value(); break;
      case '--source-config': given.sourceConfig = args.value(); break;
      case '--targets': given.targets = args.value().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--data-root': given.dataRoot = args.value(); break;
      case '--methods': {
        const methods = args.value().split(',').map((m) => m.trim()).filter(Boolean);
        for (const m of methods) if (!isMethodName(m)) fail(`--methods: '${m}' is not a method (expected ${METHOD_NAMES.join(', ')})`);
        if (methods.length === 0) fail('--methods: no method given');
        given.methods = [...new Set(methods as MethodName[])];
        break;
      }
      case '--only': {
        const parts = args.value().split(',').map((s) => s.trim());
        for (const p of parts) if (!(PARTS as readonly string[]).includes(p)) fail(`--only: '${p}' is not a part (expected ${PARTS.join(', ')})`);
        given.parts = [...new Set(parts as Part[])];
        break;
      }
      case '--device': {
        const d = args.value();
        if (!/^(cpu|cuda(:\d+)?)$/.test(d)) fail(`--device must be cpu, cuda or cuda:N, got '${d}'`);
        given.device = d;
        break;
      }
      case '--out': given.out = args.value(); break;
      case '--work': given.work = args.value(); break;
      case '--steps': given.steps = args.int(args.value(), '--steps'); break;
      case '--seeds': given.seeds = args.int(args.value(), '--seeds'); break;
      case '--batch': given.batch = args.int(args.value(), '--batch'); break;
      case '--train-size': given.trainSize = args.int(args.value(), '--train-size'); break;
      case '--subset-seed': given.subsetSeed = nonNegative(args.value(), '--subset-seed'); break;
      case '--bank-size': given.bankSize = args.int(args.value(), '--bank-size'); break;
      case '--bank-steps': given.bankSteps = args.int(args.value(), '--bank-steps'); break;
      case '--cfg': {
        const v = Number(args.value());
        if (!(v >= 1)) fail('--cfg must be a number >= 1 (1 = no guidance)');
        given.cfg = v;
        break;
      }
      case '--eval-samples': given.evalSamples = args.int(args.value(), '--eval-samples'); break;
      case '--eval-steps': given.evalSteps = args.int(args.value(), '--eval-steps'); break;
      case '--eval-batch': given.evalBatch = args.int(args.value(), '--eval-batch'); break;
      case '--extractor': given.extractor = args.value(); break;
      case '--ablation-target': given.ablationTarget = args.value(); break;
      case '--sweep-target': given.sweepTarget = args.value(); break;
      case '--tau-values': given.tauValues = numberList(args.value(), '--tau-values', { min: 0 }); break;
      case '--bank-sizes': given.bankSizes = numberList(args.value(), '--bank-sizes', { integer: true, min: 0 }); break;
      case '--sweep-seeds': given.sweepSeeds = args.int(args.value(), '--sweep-seeds'); break;
      case '--forgetting-samples': given.forgettingSamples = args.int(args.value(), '--forgetting-samples'); break;
      case '--forgetting-splits': given.forgettingSplits = numberList(args.value(), '--forgetting-splits', { min: 0, max: 1 }).sort((a, b) => a - b); break;
      case '--keep-models': given.keepModels = true; break;
      case '--ewc-items': given.ewcItems = nonNegative(args.value(), '--ewc-items'); break;
      case '--heldout': given.heldout = true; break;
      case '--no-heldout': given.heldout = false; break;
      case '--grey': given.grey = true; break;
      case '--no-grey': given.grey = false; break;
      case '--curve-points': given.curvePoints = nonNegative(args.value(), '--curve-points'); break;
      case '--curve-samples': given.curveSamples = args.int(args.value(), '--curve-samples'); break;
      case '--bank-sampler': given.bankSampler = args.choice(['ddpm', 'ddim'] as const); break;
      case '--final-variants': given.finalVariants = true; break;
      case '--no-final-variants': given.finalVariants = false; break;
      case '--dry-run': given.dryRun = true; break;
      case '--report-only': given.reportOnly = true; break;
      default: fail(`unknown flag '${f}'`);
    }
  }
  const device = given.device ?? (o.cudaAvailable ? 'cuda' : 'cpu');
  const chosen: Budget = budget ?? (device.startsWith('cuda') ? 'gpu' : 'cpu');
  const testbed = chosen === 'testbed';
  const targets = given.targets ?? (testbed ? TESTBED_TARGETS : DEFAULT_TARGETS);
  if (targets.length === 0) fail('--targets: no target given');
  if (new Set(targets).size !== targets.length) fail(`--targets: a target is given twice (${targets.join(',')})`);
  const s: BenchSettings = {
    ...PRESETS[chosen],
    budget: chosen,
    source: testbed ? TESTBED_SOURCE : DEFAULT_SOURCE,
    sourceConfig: null,
    dataRoot: 'data',
    parts: [...PARTS],
    methods: [...METHOD_NAMES],
    out: 'bench/results',
    work: 'runs/bench-transfer',
    batch: 32,
    subsetSeed: 0,
    cfg: 1.5,
    evalBatch: 250,
    extractor: testbed ? 'fashion' : 'iconnet',
    keepModels: false,
    ewcItems: 256,
    dryRun: false,
    reportOnly: false,
    ...given,
    targets,
    device,
    ablationTarget: given.ablationTarget ?? targets[0],
    sweepTarget: given.sweepTarget ?? targets[0],
  };
  for (const [flag, t] of [['--ablation-target', s.ablationTarget], ['--sweep-target', s.sweepTarget]] as const) {
    if (!targets.includes(t)) fail(`${flag} '${t}' is not one of --targets (${targets.join(',')})`);
  }
  if (s.sweepSeeds > s.seeds) fail(`--sweep-seeds (${s.sweepSeeds}) cannot exceed --seeds (${s.seeds})`);
  if (s.forgettingSamples < 2) fail('--forgetting-samples must be at least 2 (FID needs a covariance)');
  if (s.evalSamples < 2) fail('--eval-samples must be at least 2 (FID needs a covariance)');
  if (s.curvePoints > 0 && s.curveSamples < 2) fail('--curve-samples must be at least 2 (FID needs a covariance)');
  if (s.curvePoints > 0 && s.steps % s.curvePoints !== 0) fail(`--curve-points (${s.curvePoints}) must divide --steps (${s.steps})`);
  return s;
}

/** The seeds of the table runs: 0..seeds-1 (the same for every method). */
export function seedList(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i);
}
