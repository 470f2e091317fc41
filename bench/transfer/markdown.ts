// transfer.md: the benchmark's tables as Markdown (FID per target and method as mean ± std, the
// average, the relative promotion rows, the ablation, the sweeps, the forgetting curve) and the
// exact command that produced them. Pure: formatting only.
import { MeanStd, TransferJson } from './aggregate';
import { ABLATION_METHODS, MAIN_METHODS } from './methods';
import { formatP, PairedDifference } from './paired';

/** Decimals that show a value to about three significant digits (at least one decimal, and two for values from 1 to 100). */
export function decimalsFor(v: number): number {
  const a = Math.abs(v);
  if (!Number.isFinite(a) || a === 0) return 2;
  if (a >= 100) return 1;
  if (a >= 1) return 2;
  return Math.min(8, 2 - Math.floor(Math.log10(a)));
}

export function formatNumber(v: number | undefined): string {
  return v === undefined ? '—' : v.toFixed(decimalsFor(v));
}

/** "mean ± std", both with the mean's decimals, or '—'. */
export function formatMeanStd(m: MeanStd | undefined): string {
  if (!m) return '—';
  const d = decimalsFor(m.mean);
  return `${m.mean.toFixed(d)} ± ${m.std.toFixed(d)}`;
}

/** A fraction as a signed percentage with one decimal ("+21.3%"), or '—'. */
export function formatPercent(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p)) return '—';
  const v = (100 * p).toFixed(1);
  return `${p >= 0 ? '+' : ''}${v}%`;
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** The main table: a row per method (FID mean ± std per target, then the average) and a relative promotion row per method. */
export function mainTable(j: TransferJson, targets: string[]): string {
  const lines = [row(['method', ...targets, 'average']), row(['---', ...targets.map(() => '---:'), '---:'])];
  for (const method of MAIN_METHODS) {
    const avg = j.average[method];
    lines.push(row([method, ...targets.map((t) => formatMeanStd(j.targets[t]?.[method])), formatNumber(avg)]));
  }
  for (const method of MAIN_METHODS.filter((m) => m !== 'full')) {
    const p = j.relative_promotion[method];
    lines.push(row([`relative promotion, ${method}`, ...targets.map((t) => formatPercent(p?.targets[t])), formatPercent(p?.of_average)]));
  }
  if (Object.keys(j.pretrained).length) {
    lines.push(row(['source model, no fine-tuning', ...targets.map((t) => formatNumber(j.pretrained[t])), '']));
  }
  return lines.join('\n');
}

/** "+1.46 ± 1.10 (lower 0/3)": the mean paired difference, its spread, and how many pairs the method won. */
export function pairedCell(d: PairedDifference | undefined): string {
  if (!d) return '—';
  const dec = decimalsFor(Math.max(Math.abs(d.mean), d.std));
  const sign = d.mean > 0 ? '+' : '';
  return `${sign}${d.mean.toFixed(dec)} ± ${d.std.toFixed(dec)} (lower ${d.lower}/${d.n})`;
}

/** FID_method − FID_full per seed: a row per method, "mean ± std (lower in k/n)" per target, then over all pairs with the sign test. */
export function pairedTable(j: TransferJson, targets: string[]): string {
  const lines = [row(['method − full', ...targets, 'all pairs', 'sign test p']), row(['---', ...targets.map(() => '---:'), '---:', '---:'])];
  for (const [method, c] of Object.entries(j.paired)) {
    lines.push(row([method, ...targets.map((t) => pairedCell(c.targets[t])), pairedCell(c.all), formatP(c.all.sign_test_p)]));
  }
  return lines.join('\n');
}

export interface MarkdownExtras {
  /** The command that wrote this file. */
  command: string;
  /** The commands that made its runs (a benchmark continued across sessions may have several). */
  runCommands?: string[];
  metric: string;
  settingsLines: string[];
  forgetting?: { target: string; splits: number[]; fid: number[]; monotone: boolean; decreases: number; samples: number } | null;
  timingLines: string[];
}

/** Best point of each method's mean curve, steps to full fine-tuning's best, and the final variants (testbed runs). */
export function curveTable(j: TransferJson, targets: string[]): string {
  const methods = [...new Set(targets.flatMap((t) => Object.keys(j.targets[t] ?? {})))].filter((m) => targets.some((t) => j.targets[t]?.[m]?.curve));
  if (!methods.length) return '';
  const lines = ['## Along the run and final variants', '',
    'Best = the lowest point of the mean curve (in-loop FID of the EMA weights; fewer samples than the final evaluation, so biased upward): ' +
    'FID @ step. "CFG 1" is the final EMA without guidance, "raw" the final raw weights with guidance. ' +
    'Steps to full\'s best: the first evaluation where the method\'s mean curve is at or below full fine-tuning\'s best (— never).', '',
    row(['method', ...targets.flatMap((t) => [`${t} best`, `${t} CFG 1`, `${t} raw`]), 'steps to full\'s best']),
    row(['---', ...targets.flatMap(() => ['---:', '---:', '---:']), '---:'])];
  for (const m of methods) {
    const cells = targets.flatMap((t) => {
      const c = j.targets[t]?.[m];
      return [c?.best ? `${formatNumber(c.best.fid)} @ ${c.best.step}` : '', formatMeanStd(c?.cfg1), formatMeanStd(c?.raw)];
    });
    const s = j.steps_to_full_best?.[m];
    const byTarget = j.steps_to_full_best_by_target?.[m];
    const reach = m === 'full' ? '' : byTarget ? targets.map((t) => (byTarget[t] === null || byTarget[t] === undefined ? '—' : String(byTarget[t]))).join(' / ') +
      (typeof s === 'number' ? ` (mean ${formatNumber(s)})` : '') : '';
    lines.push(row([m, ...cells, reach]));
  }
  return lines.join('\n');
}

export function renderMarkdown(j: TransferJson, targets: string[], x: MarkdownExtras): string {
  const out: string[] = [];
  out.push('# Transfer benchmark: a small-scale reproduction of Diff-Tuning\'s Table 1', '');
  out.push(`${x.metric.replace(/^fid_/, 'FID with ')} features (lower is better), mean ± std over ${j.seeds} seed${j.seeds === 1 ? '' : 's'} ` +
    `(sample std, n − 1), ${j.steps} fine-tuning steps per run. Relative promotion = (FID_full − FID_method) / FID_full per target; ` +
    'the average column gives it on the average FIDs.', '');
  if (!j.complete) out.push(`**Incomplete:** ${j.missing.length} run(s) have no result yet; cells show what is measured.`, '');
  out.push(mainTable(j, targets), '');
  const mp = Object.entries(j.relative_promotion).filter(([, p]) => p.mean_over_targets !== null);
  if (mp.length) {
    out.push(`Relative promotion averaged over targets: ${mp.map(([m, p]) => `${m} ${formatPercent(p.mean_over_targets)}`).join(', ')}.`, '');
  }
  const curveLines = curveTable(j, targets);
  if (curveLines) out.push(curveLines, '');
  if (Object.keys(j.paired).length) {
    out.push('## Paired against full fine-tuning', '',
      'FID_method − FID_full between runs of the same target and seed (same training images, same evaluation labels and ' +
      'starting noise), so the sampling noise that makes the per-cell ± large mostly cancels; negative = better than full. ' +
      '"lower k/n": pairs where the method beat full. The sign test asks how likely that count is if neither method were better.', '',
      pairedTable(j, targets), '');
    const d = j.paired_difffit;
    if (d) {
      out.push('Diff-Tuning on top of DiffFit (FID_difffit+diff-tuning − FID_difffit, paired by seed): ' +
        `${targets.map((t) => `${t} ${pairedCell(d.targets[t])}`).join(', ')}; all pairs ${pairedCell(d.all)}, sign test p ${formatP(d.all.sign_test_p)}.`, '');
    }
  }
  if (j.ablation_target) {
    const t = j.ablation_target;
    const cells = j.targets[t] ?? {};
    out.push(`## Ablation on ${t}`, '', row(['method', 'FID', 'relative promotion']), row(['---', '---:', '---:']));
    for (const m of ['full', ...ABLATION_METHODS, 'diff-tuning']) {
      out.push(row([m, formatMeanStd(cells[m]), m === 'full' ? '' : formatPercent(j.relative_promotion[m]?.targets[t])]));
    }
    out.push('');
    const ablations = Object.entries(j.paired_ablation);
    if (ablations.length) {
      out.push('Each half against Diff-Tuning (both halves), paired by seed (FID_ablation − FID_diff-tuning; positive = the ablation is worse, as the paper finds):', '',
        row(['ablation − diff-tuning', t, 'sign test p']), row(['---', '---:', '---:']));
      for (const [m, c] of ablations) out.push(row([m, pairedCell(c.targets[t]), formatP(c.all.sign_test_p)]));
      out.push('');
    }
  }
  if (j.ewc) {
    const withEwc = targets.filter((t) => j.ewc![t]);
    out.push('## Forgetting of the source model (EWC)', '',
      'EWC = Σ F·(θ − θ0)² of each run\'s EMA weights against the source, F the source\'s diagonal Fisher on the knowledge bank ' +
      '(null label, uniform t; `difftune ewc`): how much of what the source model\'s own loss depends on the fine-tuning overwrote. ' +
      'Lower = less forgetting (the paper\'s Figure 5b). In brackets: the ratio to full fine-tuning\'s.', '',
      row(['method', ...withEwc]), row(['---', ...withEwc.map(() => '---:')]));
    for (const m of [...MAIN_METHODS, ...ABLATION_METHODS]) {
      if (!withEwc.some((t) => j.ewc![t][m])) continue;
      out.push(row([m, ...withEwc.map((t) => {
        const c = j.ewc![t][m];
        const full = j.ewc![t].full;
        if (!c) return '—';
        const ratio = full && m !== 'full' ? ` (×${(c.mean / full.mean).toFixed(2)})` : '';
        return `${c.mean.toPrecision(3)} ± ${c.std.toPrecision(2)}${ratio}`;
      })]));
    }
    out.push('');
  }
  if (j.tau_sweep) {
    out.push(`## τ sweep on ${j.tau_sweep.target} (diff-tuning, ${j.tau_sweep.seeds} seed${j.tau_sweep.seeds === 1 ? '' : 's'})`, '',
      row(['τ', 'FID', 'runs']), row(['---:', '---:', '---:']));
    for (const p of j.tau_sweep.points) out.push(row([String(p.tau), formatMeanStd(p), String(p.runs)]));
    out.push('');
  }
  if (j.bank_sweep) {
    out.push(`## Knowledge-bank size sweep on ${j.bank_sweep.target} (diff-tuning; 0 = no bank, i.e. reconsolidation-only)`, '',
      row(['bank size', 'FID', 'runs']), row(['---:', '---:', '---:']));
    for (const p of j.bank_sweep.points) out.push(row([String(p.bank_size), formatMeanStd(p), String(p.runs)]));
    out.push('');
  }
  if (x.forgetting) {
    const f = x.forgetting;
    out.push(`## Chain of forgetting on ${f.target} (full fine-tuning, seed 0, ${f.samples} samples per point)`, '',
      'Share of the reverse steps (from the data end, t = 0) handed to the pretrained model, and the FID that results.',
      `Rises monotonically toward the noise end: ${f.monotone ? 'yes' : `no (${f.decreases} decrease${f.decreases === 1 ? '' : 's'})`}. ` +
      'Plot: forgetting/forgetting.svg.', '',
      row(['pretrained share', ...f.splits.map((s) => s.toFixed(2))]), row(['---', ...f.splits.map(() => '---:')]),
      row(['FID', ...f.fid.map((v) => formatNumber(v))]), '');
  }
  out.push('## Settings', '', ...x.settingsLines.map((l) => `- ${l}`), '');
  if (x.timingLines.length) out.push('## Time', '', ...x.timingLines.map((l) => `- ${l}`), '');
  out.push('## Command', '', '```sh', x.command, '```', '');
  const others = (x.runCommands ?? []).filter((c) => c !== x.command);
  if (others.length) out.push('Runs were also made by:', '', '```sh', ...others, '```', '');
  return out.join('\n');
}
