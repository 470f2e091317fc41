// The report's figures as standalone SVG (through report/plot.ts): the training losses read back
// from each run's log.jsonl, and Diff-Tuning's two timestep laws psi and xi.
import { plotSvg, PlotSeries } from '../report/plot';
import { TimestepDistribution } from '../tuning/timesteps';

export interface RunLog {
  /** Legend name of the run, e.g. 'full' or 'Diff-Tuning'. */
  name: string;
  /** log.jsonl records (step, loss_target, loss_replay, ...). */
  records: Record<string, unknown>[];
}

/** Legend labels of the loss plot (tests look for them). */
export const lossSeriesLabel = (run: string, part: 'target' | 'replay'): string =>
  `${run}: ${part === 'target' ? 'target loss (reconsolidation)' : 'replay loss on the bank (retention)'}`;

function seriesOf(run: RunLog, key: 'loss_target' | 'loss_replay'): { x: number[]; y: number[] } {
  const x: number[] = [];
  const y: number[] = [];
  for (const r of run.records) {
    const step = r.step;
    const v = r[key];
    if (typeof step === 'number' && typeof v === 'number' && Number.isFinite(v)) {
      x.push(step);
      y.push(v);
    }
  }
  return { x, y };
}

/** Target loss of every run, and replay loss of the runs that replay, against the step. */
export function lossCurveSvg(runs: readonly RunLog[]): string {
  const series: PlotSeries[] = [];
  runs.forEach((run) => {
    const target = seriesOf(run, 'loss_target');
    if (target.x.length) series.push({ label: lossSeriesLabel(run.name, 'target'), ...target });
    const replay = seriesOf(run, 'loss_replay');
    if (replay.x.length) series.push({ label: lossSeriesLabel(run.name, 'replay'), ...replay, dashed: true });
  });
  if (series.length === 0) throw new Error('lossCurveSvg: no run logged a loss (empty log.jsonl files?)');
  return plotSvg(series, {
    title: 'Training losses (hybrid MSE + VB, mean over each log interval)',
    xLabel: 'optimizer step',
    yLabel: 'loss',
  });
}

/** Legend labels of the timestep plot (tests look for the law names). */
export const psiLabel = (tau: number): string => `psi(t) ∝ (t+1)^τ, τ = ${tau}: target batch (reconsolidation)`;
export const xiLabel = (tau: number): string => `xi(t) ∝ (T−t)^τ, τ = ${tau}: replay batch on the bank (retention)`;
export const UNIFORM_LABEL = 'uniform: full fine-tuning';

/** The two laws (and uniform for reference) as T·p(t), i.e. relative to the uniform density. */
export function timestepLawsSvg(numTimesteps: number, tau: number): string {
  const T = numTimesteps;
  const psi = TimestepDistribution.create({ kind: 'noise-end', tau }, T, 'psi');
  const xi = TimestepDistribution.create({ kind: 'data-end', tau }, T, 'xi');
  // Every 5th timestep is plenty for a smooth curve and keeps the file small.
  const ts = Array.from({ length: T }, (_, t) => t).filter((t) => t % 5 === 0 || t === T - 1);
  const series: PlotSeries[] = [
    { label: psiLabel(tau), x: ts, y: ts.map((t) => T * psi.probs[t]), style: 'line' },
    { label: xiLabel(tau), x: ts, y: ts.map((t) => T * xi.probs[t]), style: 'line' },
    { label: UNIFORM_LABEL, x: [0, T - 1], y: [1, 1], style: 'line', dashed: true, color: '#888888' },
  ];
  return plotSvg(series, {
    title: 'Where along the chain each batch trains',
    xLabel: 'timestep t (0 = data end, T−1 = noise end)',
    yLabel: 'T · p(t)  (1 = uniform)',
    xRange: [0, T],
  });
}
