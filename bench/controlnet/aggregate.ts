// From run records to bench:controlnet's numbers: per condition and method the convergence step as
// mean ± std over seeds, the relative speed-up (steps_full − steps_dt) / steps_full per condition
// and its mean over conditions (the paper's 24%), and the Markdown table. A run that never fell
// under the threshold counts as steps + evalEvery (the first evaluation it could have converged
// at after the run, so a lower bound) and is counted as censored. Pure.
import { meanStd, MeanStd } from '../transfer/aggregate';
import { formatMeanStd, formatPercent } from '../transfer/markdown';
import { ConvergencePoint } from '../../src/tuning/convergence';
import { ControlRunSpec, runId } from './plan';
import { ControlMethod, METHODS } from './settings';

export interface ControlRunRecord extends ControlRunSpec {
  kind: 'run';
  key: string;
  id: string;
  /** First evaluation under the threshold; null: not within the run. */
  convergenceStep: number | null;
  steps: number;
  evalEvery: number;
  threshold: number;
  reference: { matched: number; shuffled: number };
  series: ConvergencePoint[];
  trainSeconds: number;
  stepSeconds: number;
  device: string;
  command?: string;
  finished: string;
}

export interface MethodCell extends MeanStd { runs: number; censored: number }

export interface ControlNetJson {
  /** Mean convergence step per condition and method (the issue's requested shape). */
  conditions: Record<string, Partial<Record<ControlMethod, number>>>;
  /** Mean over conditions of (full − diff-tuning) / full; null until a condition has both. */
  average_speedup: number | null;
  details: Record<string, { full?: MethodCell; 'diff-tuning'?: MethodCell; speedup: number | null }>;
  /** (Σ full − Σ diff-tuning) / Σ full over the conditions with both (the other way to average). */
  speedup_of_total_steps: number | null;
  complete: boolean;
  missing: string[];
}

/** The step a record counts as. */
export function countedSteps(r: Pick<ControlRunRecord, 'convergenceStep' | 'steps' | 'evalEvery'>): number {
  return r.convergenceStep ?? r.steps + r.evalEvery;
}

export function speedup(full: number, dt: number): number {
  if (!(full > 0)) throw new RangeError(`speed-up: full fine-tuning's convergence step must be > 0, got ${full}`);
  return (full - dt) / full;
}

export function aggregate(byId: Map<string, ControlRunRecord>, o: { conditions: string[]; seeds: number }): ControlNetJson {
  const conditions: ControlNetJson['conditions'] = {};
  const details: ControlNetJson['details'] = {};
  const missing: string[] = [];
  const speedups: number[] = [];
  let totalFull = 0;
  let totalDt = 0;
  for (const condition of o.conditions) {
    const d: ControlNetJson['details'][string] = { speedup: null };
    conditions[condition] = {};
    for (const method of METHODS) {
      const records: ControlRunRecord[] = [];
      for (let seed = 0; seed < o.seeds; seed++) {
        const id = runId({ condition: condition as ControlRunSpec['condition'], method, seed });
        const r = byId.get(id);
        if (r) records.push(r);
        else missing.push(id);
      }
      if (!records.length) continue;
      const cell = { ...meanStd(records.map(countedSteps)), runs: records.length, censored: records.filter((r) => r.convergenceStep === null).length };
      d[method] = cell;
      conditions[condition][method] = cell.mean;
    }
    if (d.full && d['diff-tuning'] && d.full.mean > 0) {
      d.speedup = speedup(d.full.mean, d['diff-tuning'].mean);
      speedups.push(d.speedup);
      totalFull += d.full.mean;
      totalDt += d['diff-tuning'].mean;
    }
    details[condition] = d;
  }
  return {
    conditions,
    average_speedup: speedups.length ? speedups.reduce((a, b) => a + b, 0) / speedups.length : null,
    details,
    speedup_of_total_steps: totalFull > 0 ? (totalFull - totalDt) / totalFull : null,
    complete: missing.length === 0,
    missing,
  };
}

function cellText(c: MethodCell | undefined): string {
  if (!c) return '—';
  return `${formatMeanStd(c)}${c.censored ? ` (${c.censored}/${c.runs} not converged: counted as steps + eval interval)` : ''}`;
}

/** controlnet.md: the table, how it was measured, and the command. */
export function renderMarkdown(j: ControlNetJson, o: { conditions: string[]; settingsLines: string[]; command: string }): string {
  const lines = [
    '# bench:controlnet — steps to sudden convergence, DiT-ControlNet, full fine-tuning vs Diff-Tuning',
    '',
    '| condition | full (steps) | diff-tuning (steps) | speed-up |',
    '| --- | ---: | ---: | ---: |',
    ...o.conditions.map((c) => `| ${c} | ${cellText(j.details[c]?.full)} | ${cellText(j.details[c]?.['diff-tuning'])} | ${formatPercent(j.details[c]?.speedup)} |`),
    `| **average** | | | **${formatPercent(j.average_speedup)}** |`,
    '',
    `Speed-up = (steps_full − steps_diff-tuning) / steps_full per condition (mean steps over seeds), averaged over conditions; ` +
      `over the summed steps it is ${formatPercent(j.speedup_of_total_steps)}. The paper reports 24% on Stable Diffusion.`,
    ...(j.complete ? [] : ['', `Incomplete: ${j.missing.length} runs missing (${j.missing.slice(0, 6).join(', ')}${j.missing.length > 6 ? ', ...' : ''}).`]),
    '',
    '## Settings',
    '',
    ...o.settingsLines.map((l) => `- ${l}`),
    '',
    '```sh',
    o.command,
    '```',
    '',
  ];
  return lines.join('\n');
}
