// The list of runs the selected parts need. A run is one (target, method, tau, bank size, seed);
// parts that need the same run share it (the tau sweep's tau = 1 and the bank sweep's default size
// are the table's diff-tuning runs; bank size 0 is reconsolidation-only). Order: seed-major, so a
// benchmark stopped early already has every cell of the table for its first seeds.
import { ABLATION_METHODS, MAIN_METHODS, MethodName, trainerMethod } from './methods';
import { BenchSettings, Part, seedList } from './settings';

/** 'pretrained': the source model evaluated on the target without fine-tuning (a reference row). */
export type RunMethod = MethodName | 'pretrained';

export interface RunSpec {
  target: string;
  method: RunMethod;
  /** objective.tau; null where the method does not use it. */
  tau: number | null;
  /** Knowledge-bank items replayed (0: no bank). */
  bankSize: number;
  seed: number;
}

export interface PlannedRun extends RunSpec {
  /** Readable identity, unique within a plan. */
  id: string;
  /** The parts that use the run. */
  parts: Part[];
}

export function runId(r: RunSpec): string {
  return `${r.target}/${r.method}/tau=${r.tau ?? '-'}/bank=${r.bankSize}/seed=${r.seed}`;
}

/** The spec of a method at a tau and bank size, with the fields it ignores normalised (so equal runs get equal ids). */
export function methodRun(target: string, method: MethodName, o: { tau: number; bankSize: number; seed: number }): RunSpec {
  const m = trainerMethod(method);
  if (m.usesBank && o.bankSize < 1) throw new Error(`method '${method}' replays the bank: bank size must be >= 1, got ${o.bankSize}`);
  return { target, method, tau: m.usesTau ? o.tau : null, bankSize: m.usesBank ? o.bankSize : 0, seed: o.seed };
}

/** The bank sweep's point of size b: diff-tuning replaying b items, where b = 0 is diff-tuning without a bank (reconsolidation-only). */
export function bankSweepRun(target: string, bankSize: number, seed: number): RunSpec {
  return bankSize === 0
    ? methodRun(target, 'reconsolidation-only', { tau: 1, bankSize: 0, seed })
    : methodRun(target, 'diff-tuning', { tau: 1, bankSize, seed });
}

export const TABLE_TAU = 1;

export function planRuns(s: Pick<BenchSettings, 'targets' | 'methods' | 'parts' | 'seeds' | 'sweepSeeds' | 'bankSize' | 'tauValues' | 'bankSizes' | 'ablationTarget' | 'sweepTarget'>): PlannedRun[] {
  const runs = new Map<string, PlannedRun>();
  const add = (spec: RunSpec, part: Part): void => {
    const id = runId(spec);
    const have = runs.get(id);
    if (have) {
      if (!have.parts.includes(part)) have.parts.push(part);
    } else {
      runs.set(id, { ...spec, id, parts: [part] });
    }
  };
  const seeds = seedList(s.seeds);
  const sweepSeeds = seeds.slice(0, s.sweepSeeds);
  const parts = new Set(s.parts);
  const std = { tau: TABLE_TAU, bankSize: s.bankSize };
  if (parts.has('table')) {
    for (const target of s.targets) add({ target, method: 'pretrained', tau: null, bankSize: 0, seed: 0 }, 'table');
    for (const seed of seeds) {
      for (const target of s.targets) {
        const methods = [...MAIN_METHODS, ...(target === s.ablationTarget ? ABLATION_METHODS : [])];
        for (const method of methods) if (s.methods.includes(method)) add(methodRun(target, method, { ...std, seed }), 'table');
      }
    }
  }
  if (parts.has('tau')) {
    for (const seed of sweepSeeds) {
      for (const tau of s.tauValues) add(methodRun(s.sweepTarget, 'diff-tuning', { tau, bankSize: s.bankSize, seed }), 'tau');
    }
  }
  if (parts.has('bank')) {
    for (const seed of sweepSeeds) for (const b of s.bankSizes) add(bankSweepRun(s.sweepTarget, b, seed), 'bank');
  }
  if (parts.has('forgetting')) add(forgettingRun(s), 'forgetting');
  return [...runs.values()];
}

/** The fine-tuned model the forgetting curve probes: standard fine-tuning (the paper's Figure 1) on the sweep target, seed 0. */
export function forgettingRun(s: Pick<BenchSettings, 'sweepTarget' | 'bankSize'>): RunSpec {
  return methodRun(s.sweepTarget, 'full', { tau: TABLE_TAU, bankSize: s.bankSize, seed: 0 });
}

/** The largest bank any planned run replays (0: no bank needed). */
export function largestBank(runs: readonly RunSpec[]): number {
  return runs.reduce((a, r) => Math.max(a, r.bankSize), 0);
}
