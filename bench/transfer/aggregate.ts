// From run records to the benchmark's numbers: FID per target and method as mean ± std over seeds,
// the average over targets, the relative promotion (FID_full − FID_method) / FID_full, the sweeps.
// Pure: the JSON shape of transfer.json is built (and tested) here.
import { ABLATION_METHODS, MAIN_METHODS, MethodName } from './methods';
import { PairedComparison, pairedAgainst } from './paired';
import { bankSweepRun, methodRun, RunSpec, runId, TABLE_TAU } from './plan';
import { RunRecord } from './results-log';
import { seedList } from './settings';

export interface MeanStd { mean: number; std: number }

/** Mean and sample standard deviation (n − 1 in the denominator; 0 for a single value). */
export function meanStd(xs: readonly number[]): MeanStd {
  if (xs.length === 0) throw new RangeError('meanStd: no values');
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length === 1) return { mean, std: 0 };
  const ss = xs.reduce((a, b) => a + (b - mean) ** 2, 0);
  return { mean, std: Math.sqrt(ss / (xs.length - 1)) };
}

/** (FID_full − FID_method) / FID_full: the paper's "relative promotion" (positive = lower FID than full fine-tuning). */
export function relativePromotion(fidFull: number, fidMethod: number): number {
  if (!(fidFull > 0)) throw new RangeError(`relativePromotion: FID of full fine-tuning must be > 0, got ${fidFull}`);
  return (fidFull - fidMethod) / fidFull;
}

export interface SweepPoint extends MeanStd { runs: number }

/** A table cell: FID over seeds at the final step, with the runs' in-loop curves when they have them. */
export interface Cell extends MeanStd {
  /** [step, FID mean over the seeds that have that step]: the EMA weights along the run. */
  curve?: [number, number][];
  /** The lowest point of the mean curve. */
  best?: { step: number; fid: number };
  /** The final EMA without guidance, and the final raw weights with guidance (runs that measured them). */
  cfg1?: MeanStd;
  raw?: MeanStd;
}

export interface TransferJson {
  average: Record<string, number>;
  targets: Record<string, Record<string, Cell>>;
  /** Per method: the first step where its mean curve reaches full fine-tuning's best (mean over targets; null when some target never does). */
  steps_to_full_best?: Record<string, number | null>;
  steps_to_full_best_by_target?: Record<string, Record<string, number | null>>;
  steps: number;
  seeds: number;
  relative_promotion: Record<string, { targets: Record<string, number>; mean_over_targets: number | null; of_average: number | null }>;
  /** FID_method − FID_full per seed (same data and evaluation noise), per method other than full. */
  paired: Record<string, PairedComparison>;
  /** FID_ablation − FID_diff-tuning per seed on the ablation target: is each half worse than both together? */
  paired_ablation: Record<string, PairedComparison>;
  /** FID_difffit+diff-tuning − FID_difffit per seed: Diff-Tuning's effect with PEFT (null: no pair measured). */
  paired_difffit: PairedComparison | null;
  kid: { average: Record<string, number>; targets: Record<string, Record<string, MeanStd>> };
  pretrained: Record<string, number>;
  ablation_target: string | null;
  /** EWC against the source (sum F·(θ−θ0)², src/eval/ewc.ts) per target and method, from the runs that measured it. */
  ewc?: Record<string, Record<string, MeanStd & { runs: number }>>;
  tau_sweep?: { target: string; seeds: number; points: Array<SweepPoint & { tau: number }> };
  bank_sweep?: { target: string; seeds: number; points: Array<SweepPoint & { bank_size: number }> };
  complete: boolean;
  missing: string[];
}

export interface AggregateOptions {
  targets: string[];
  steps: number;
  seeds: number;
  sweepSeeds: number;
  bankSize: number;
  /** Where the ablation ran (null: not part of this benchmark). */
  ablationTarget: string | null;
  tau?: { target: string; values: number[] };
  bank?: { target: string; sizes: number[] };
}

type Metric = 'fid' | 'kid';

/**
 * The benchmark's JSON from its records (by run id, already restricted to this experiment's keys).
 * `average` holds only methods measured on every target; cells without any record are left out
 * and listed in `missing`.
 */
export function aggregate(byId: ReadonlyMap<string, RunRecord>, o: AggregateOptions): TransferJson {
  const missing: string[] = [];
  const collect = (specs: RunSpec[], metric: Metric): { values: number[]; ids: string[] } => {
    const values: number[] = [];
    const ids: string[] = [];
    for (const s of specs) {
      const id = runId(s);
      const r = byId.get(id);
      if (r) values.push(r[metric]);
      else ids.push(id);
    }
    return { values, ids };
  };
  const seeds = seedList(o.seeds);
  const cellSpecs = (target: string, method: MethodName): RunSpec[] =>
    seeds.map((seed) => methodRun(target, method, { tau: TABLE_TAU, bankSize: o.bankSize, seed }));
  const methodsOf = (target: string): MethodName[] => [...MAIN_METHODS, ...(target === o.ablationTarget ? ABLATION_METHODS : [])];

  const tables = { fid: {} as Record<string, Record<string, Cell>>, kid: {} as Record<string, Record<string, MeanStd>> };
  for (const target of o.targets) {
    tables.fid[target] = {};
    tables.kid[target] = {};
    for (const method of methodsOf(target)) {
      const specs = cellSpecs(target, method);
      const fid = collect(specs, 'fid');
      missing.push(...fid.ids);
      if (fid.values.length) {
        tables.fid[target][method] = { ...meanStd(fid.values), ...curveParts(specs.map((sp) => byId.get(runId(sp))).filter((r): r is RunRecord => !!r)) };
        tables.kid[target][method] = meanStd(collect(specs, 'kid').values);
      }
    }
  }
  const averageOf = (t: Record<string, Record<string, MeanStd>>): Record<string, number> => {
    const avg: Record<string, number> = {};
    for (const method of MAIN_METHODS) {
      const cells = o.targets.map((target) => t[target][method]);
      if (cells.every(Boolean)) avg[method] = cells.reduce((a, c) => a + c.mean, 0) / cells.length;
    }
    return avg;
  };
  const average = averageOf(tables.fid);

  const promotion: TransferJson['relative_promotion'] = {};
  for (const method of [...MAIN_METHODS, ...ABLATION_METHODS].filter((m) => m !== 'full')) {
    const perTarget: Record<string, number> = {};
    for (const target of o.targets) {
      const full = tables.fid[target].full;
      const m = tables.fid[target][method];
      if (full && m) perTarget[target] = relativePromotion(full.mean, m.mean);
    }
    const values = Object.values(perTarget);
    if (!values.length) continue;
    const everyTarget = values.length === o.targets.length;
    promotion[method] = {
      targets: perTarget,
      mean_over_targets: everyTarget ? values.reduce((a, b) => a + b, 0) / values.length : null,
      of_average: average.full !== undefined && average[method] !== undefined ? relativePromotion(average.full, average[method]) : null,
    };
  }

  const paired: TransferJson['paired'] = {};
  const fidOf = (target: string, method: string, seed: number): number | undefined =>
    byId.get(runId(methodRun(target, method as MethodName, { tau: TABLE_TAU, bankSize: o.bankSize, seed })))?.fid;
  for (const method of [...MAIN_METHODS, ...ABLATION_METHODS].filter((m) => m !== 'full')) {
    const on = o.targets.filter((t) => methodsOf(t).includes(method));
    const c = pairedAgainst('full', method, on, seeds, fidOf);
    if (c) paired[method] = c;
  }
  const pairedAblation: TransferJson['paired_ablation'] = {};
  if (o.ablationTarget) {
    for (const method of ABLATION_METHODS) {
      const c = pairedAgainst('diff-tuning', method, [o.ablationTarget], seeds, fidOf);
      if (c) pairedAblation[method] = c;
    }
  }

  const pretrained: Record<string, number> = {};
  for (const target of o.targets) {
    const r = byId.get(runId({ target, method: 'pretrained', tau: null, bankSize: 0, seed: 0 }));
    if (r) pretrained[target] = r.fid;
  }

  const sweepSeeds = seedList(o.sweepSeeds);
  const sweepPoint = (specs: RunSpec[]): SweepPoint | null => {
    const { values, ids } = collect(specs, 'fid');
    missing.push(...ids);
    return values.length ? { ...meanStd(values), runs: values.length } : null;
  };
  const toBest: Record<string, Record<string, number | null>> = {};
  for (const target of o.targets) {
    const bestFull = tables.fid[target].full?.best;
    if (!bestFull) continue;
    for (const method of methodsOf(target).filter((m) => m !== 'full')) {
      const curve = tables.fid[target][method]?.curve;
      if (!curve) continue;
      (toBest[method] ??= {})[target] = curve.find(([, fid]) => fid <= bestFull.fid)?.[0] ?? null;
    }
  }
  const out: TransferJson = {
    average,
    targets: tables.fid,
    steps: o.steps,
    seeds: o.seeds,
    relative_promotion: promotion,
    paired,
    paired_ablation: pairedAblation,
    paired_difffit: pairedAgainst('difffit', 'difffit+diff-tuning', o.targets, seeds, fidOf),
    kid: { average: averageOf(tables.kid), targets: tables.kid },
    pretrained,
    ablation_target: o.ablationTarget,
    complete: false,
    missing: [],
  };
  const ewc: NonNullable<TransferJson['ewc']> = {};
  for (const target of o.targets) {
    for (const method of methodsOf(target)) {
      const values = cellSpecs(target, method).flatMap((spec) => {
        const e = byId.get(runId(spec))?.ewc;
        return e ? [e.total] : [];
      });
      if (values.length) (ewc[target] ??= {})[method] = { ...meanStd(values), runs: values.length };
    }
  }
  if (Object.keys(ewc).length) out.ewc = ewc;
  if (Object.keys(toBest).length) {
    out.steps_to_full_best_by_target = toBest;
    out.steps_to_full_best = Object.fromEntries(Object.entries(toBest).map(([method, byTarget]) => {
      const steps = o.targets.map((t) => byTarget[t]);
      return [method, steps.every((v): v is number => typeof v === 'number') ? steps.reduce((a, b) => a + b, 0) / steps.length : null];
    }));
  }
  if (o.tau) {
    const { target, values } = o.tau;
    out.tau_sweep = {
      target, seeds: o.sweepSeeds,
      points: values.flatMap((tau) => {
        const p = sweepPoint(sweepSeeds.map((seed) => methodRun(target, 'diff-tuning', { tau, bankSize: o.bankSize, seed })));
        return p ? [{ tau, ...p }] : [];
      }),
    };
  }
  if (o.bank) {
    const { target, sizes } = o.bank;
    out.bank_sweep = {
      target, seeds: o.sweepSeeds,
      points: sizes.flatMap((b) => {
        const p = sweepPoint(sweepSeeds.map((seed) => bankSweepRun(target, b, seed)));
        return p ? [{ bank_size: b, ...p }] : [];
      }),
    };
  }
  out.missing = [...new Set(missing)];
  out.complete = out.missing.length === 0;
  return out;
}

/** A cell's curve (mean over the seeds at each step), its best point, and the final variants, from its runs. */
export function curveParts(records: readonly RunRecord[]): Pick<Cell, 'curve' | 'best' | 'cfg1' | 'raw'> {
  const out: Pick<Cell, 'curve' | 'best' | 'cfg1' | 'raw'> = {};
  const atStep = new Map<number, number[]>();
  for (const r of records) for (const [step, fid] of r.curve ?? []) atStep.set(step, [...(atStep.get(step) ?? []), fid]);
  if (atStep.size) {
    out.curve = [...atStep.entries()].sort((a, b) => a[0] - b[0]).map(([step, v]) => [step, meanStd(v).mean]);
    const [step, fid] = out.curve.reduce((a, b) => (b[1] < a[1] ? b : a));
    out.best = { step, fid };
  }
  const cfg1 = records.flatMap((r) => (typeof r.fidCfg1 === 'number' ? [r.fidCfg1] : []));
  const raw = records.flatMap((r) => (typeof r.fidRaw === 'number' ? [r.fidRaw] : []));
  if (cfg1.length) out.cfg1 = meanStd(cfg1);
  if (raw.length) out.raw = meanStd(raw);
  return out;
}

/** Whether a curve never decreases (allowing `tolerance` of noise per step) and how many steps go down. */
export function monotoneRise(values: readonly number[], tolerance = 0): { monotone: boolean; decreases: number } {
  let decreases = 0;
  for (let i = 1; i < values.length; i++) if (values[i] < values[i - 1] - tolerance) decreases += 1;
  return { monotone: decreases === 0, decreases };
}
