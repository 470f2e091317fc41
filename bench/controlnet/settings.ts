// bench:controlnet's settings: a budget preset (quick | cpu | gpu) fills every number, flags
// override any of them. Pure: parseSettings(argv) is tested without running anything.
import { Args } from '../args';
import { CONDITION_KINDS, ConditionKind, isConditionKind } from '../../src/data/conditions';
import { DEFAULT_SOURCE } from '../transfer/settings';

export const BUDGETS = ['quick', 'cpu', 'gpu'] as const;
export type Budget = (typeof BUDGETS)[number];
export const METHODS = ['full', 'diff-tuning'] as const;
export type ControlMethod = (typeof METHODS)[number];

/** The numbers a budget fixes. */
export interface BudgetNumbers {
  steps: number;
  seeds: number;
  /** Steps between convergence evaluations. */
  evalEvery: number;
  /** Fixed held-out conditions per evaluation, and the DDIM steps of their samples. */
  evalSamples: number;
  evalSteps: number;
  bankSize: number;
  bankSteps: number;
}

/**
 * quick: proves the pipeline end to end in a few minutes (its numbers mean nothing);
 * cpu: 5 conditions x 2 methods x 3 seeds = 30 runs of 1000 steps on the shipped source model
 *   (about 0.5 s per step at batch 32 on 2 idle cores: 4-5 hours, plus the evaluations);
 * gpu: 3000 steps with denser, larger evaluations, for one GPU.
 */
export const PRESETS: Record<Budget, BudgetNumbers> = {
  quick: { steps: 10, seeds: 1, evalEvery: 5, evalSamples: 8, evalSteps: 5, bankSize: 32, bankSteps: 10 },
  cpu: { steps: 1000, seeds: 3, evalEvery: 25, evalSamples: 16, evalSteps: 10, bankSize: 512, bankSteps: 25 },
  gpu: { steps: 3000, seeds: 3, evalEvery: 25, evalSamples: 64, evalSteps: 20, bankSize: 1024, bankSteps: 50 },
};

export interface BenchSettings extends BudgetNumbers {
  budget: Budget;
  source: string;
  sourceConfig: string | null;
  /** The target dataset (an image folder under dataRoot). */
  target: string;
  dataRoot: string;
  conditions: ConditionKind[];
  device: string;
  /** controlnet.json, controlnet.md, the results log and the curves. */
  out: string;
  /** The bank and the run folders. */
  work: string;
  batch: number;
  lr: number;
  /** Copied DiT blocks (default half the source's depth). */
  blocks: number | null;
  /** Guidance of the bank's samples. */
  cfg: number;
  thresholdFraction: number;
  dryRun: boolean;
  /** Write the tables from the runs already in the log (missing ones listed), run nothing. */
  reportOnly: boolean;
}

export const USAGE = `usage: npm run bench:controlnet -- [flags]
  --budget quick|cpu|gpu    preset of every number below (default: gpu with --device cuda, else cpu)
  --source FILE             source DiT weights (.safetensors + .json beside it; default ${DEFAULT_SOURCE})
  --source-config FILE      its config JSON when not beside it
  --target NAME             the target dataset under --data-root (default twemoji)
  --data-root DIR           default data
  --conditions a,b,...      of ${CONDITION_KINDS.join(', ')} (default all five)
  --device cpu|cuda|cuda:N  default cuda when available, else cpu
  --out DIR                 results: controlnet.json, controlnet.md, controlnet-runs.jsonl, controlnet/*.svg (default bench/results)
  --work DIR                bank and run folders (default runs/bench-controlnet)
  --steps N --seeds K --batch B --lr X --blocks N
  --eval-every N --eval-samples N --eval-steps N --threshold-fraction F
  --bank-size N --bank-steps N --cfg S
  --dry-run                 print the plan and an estimate, and stop
  --report-only             write controlnet.json/.md from the finished runs in the log (missing runs listed); run nothing`;

/** The flags that take a positive integer, and their fields. */
const INTEGER_FLAGS: Record<string, 'steps' | 'seeds' | 'batch' | 'blocks' | 'evalEvery' | 'evalSamples' | 'evalSteps' | 'bankSize' | 'bankSteps'> = {
  '--steps': 'steps', '--seeds': 'seeds', '--batch': 'batch', '--blocks': 'blocks', '--eval-every': 'evalEvery',
  '--eval-samples': 'evalSamples', '--eval-steps': 'evalSteps', '--bank-size': 'bankSize', '--bank-steps': 'bankSteps',
};

/** Settings from the command line; `cudaAvailable` picks the default device and budget. */
export function parseSettings(argv: readonly string[], o: { cudaAvailable: boolean }): BenchSettings {
  const fail = (msg: string): never => { throw new Error(msg); };
  const args = new Args([...argv], fail);
  const given: Partial<BenchSettings> = {};
  let budget: Budget | undefined;
  const positive = (s: string, what: string, max = Infinity): number => {
    const v = Number(s);
    if (s.trim() === '' || !(v > 0) || v > max) fail(`${what} must be a number in (0, ${max}], got '${s}'`);
    return v;
  };
  for (let f = args.flag(); f !== undefined; f = args.flag()) {
    switch (f) {
      case '--budget': budget = args.choice(BUDGETS); break;
      case '--source': given.source = args.value(); break;
      case '--source-config': given.sourceConfig = args.value(); break;
      case '--target': given.target = args.value(); break;
      case '--data-root': given.dataRoot = args.value(); break;
      case '--conditions': {
        const names = args.value().split(',').map((s) => s.trim()).filter(Boolean);
        for (const n of names) if (!isConditionKind(n)) fail(`--conditions: '${n}' is not a condition (expected ${CONDITION_KINDS.join(', ')})`);
        if (!names.length) fail('--conditions: no condition given');
        if (new Set(names).size !== names.length) fail(`--conditions: a condition is given twice (${names.join(',')})`);
        given.conditions = names as ConditionKind[];
        break;
      }
      case '--device': given.device = args.value(); break;
      case '--out': given.out = args.value(); break;
      case '--work': given.work = args.value(); break;
      case '--lr': given.lr = positive(args.value(), '--lr', 1); break;
      case '--threshold-fraction': given.thresholdFraction = positive(args.value(), '--threshold-fraction', 1); break;
      case '--cfg': given.cfg = Number(args.value()); break;
      case '--dry-run': given.dryRun = true; break;
      case '--report-only': given.reportOnly = true; break;
      default: {
        const field = INTEGER_FLAGS[f];
        if (!field) fail(`unknown flag '${f}'`);
        given[field] = args.int(args.value(), f);
      }
    }
  }
  const device = given.device ?? (o.cudaAvailable ? 'cuda' : 'cpu');
  const chosen: Budget = budget ?? (device.startsWith('cuda') ? 'gpu' : 'cpu');
  const s: BenchSettings = {
    ...PRESETS[chosen],
    budget: chosen,
    source: DEFAULT_SOURCE,
    sourceConfig: null,
    target: 'twemoji',
    dataRoot: 'data',
    conditions: [...CONDITION_KINDS],
    out: 'bench/results',
    work: 'runs/bench-controlnet',
    batch: 32,
    lr: 1e-4,
    blocks: null,
    cfg: 1.5,
    thresholdFraction: 0.5,
    dryRun: false,
    reportOnly: false,
    ...given,
    device,
  };
  if (!/^(cpu|cuda(:\d+)?)$/.test(s.device)) fail(`--device must be cpu, cuda or cuda:N, got '${s.device}'`);
  if (!(s.cfg >= 1)) fail(`--cfg must be a number >= 1 (1 = no guidance), got ${s.cfg}`);
  if (s.evalEvery > s.steps) fail(`--eval-every (${s.evalEvery}) is longer than the run (--steps ${s.steps})`);
  if (s.evalSamples < 2) fail('--eval-samples must be at least 2 (the threshold compares each condition with another image\'s)');
  if (Math.floor(s.batch * 0.2) < 1) fail(`--batch ${s.batch} gives Diff-Tuning no replay items (floor(0.2 x batch) = 0); use 5 or more`);
  return s;
}
