// The FID-vs-steps curves of a target's methods side by side (the testbed's "faster convergence"
// in image space): one plot per target, each method's mean over seeds at each in-loop evaluation.
import * as path from 'path';
import { plotSvg, PlotSeries, svgToPng } from '../../src/report/plot';
import { writeFileAtomic } from '../../src/tuning/write-atomic';
import type { TransferJson } from './aggregate';

/** OUT/curves-<target>.svg and .png for every target with curves; returns the PNG paths. */
export async function writeCurvePlots(out: string, json: Pick<TransferJson, 'targets'>, metric: string, seeds: number): Promise<string[]> {
  const files: string[] = [];
  for (const [target, cells] of Object.entries(json.targets)) {
    const series: PlotSeries[] = Object.entries(cells).flatMap(([method, cell]) =>
      cell.curve ? [{ label: method, x: cell.curve.map(([step]) => step), y: cell.curve.map(([, fid]) => fid), dashed: method !== 'full' && method !== 'diff-tuning' }] : []);
    if (!series.length) continue;
    const svg = plotSvg(series, { title: `${target}: ${metric} of the EMA weights along the run (mean of ${seeds} seeds)`, xLabel: 'training step', yLabel: metric });
    const base = path.join(out, `curves-${target}`);
    writeFileAtomic(`${base}.svg`, svg);
    writeFileAtomic(`${base}.png`, await svgToPng(svg));
    files.push(`${base}.png`);
  }
  return files;
}
