// The demo's report as one static HTML page: no scripts, no external assets. Figures are files in
// the same folder (PNG grids, SVG plots), referenced by relative paths, so the folder can be
// zipped, mailed or served as it is.
import { ForgettingPoint } from '../eval/forgetting';
import { DiTConfig } from '../models/dit';
import { escapeXml } from '../report/plot';
import { TrainConfig } from '../tuning/config';
import { DemoEwc } from './ewc-step';
import { SampleMetrics } from './metrics';
import { DemoSettings } from './settings';
import { formatSeconds, StepTiming } from './step-timer';

export interface ReportData {
  settings: DemoSettings;
  source: { file: string; sha256: string; config: DiTConfig; parameters: number };
  data: {
    name: string;
    dir: string;
    classes: string[];
    /** Training images per class. */
    train: Record<string, number>;
    heldOut: number;
    /** Class of each grid cell, in order. */
    gridLabels: string[];
  };
  bank: { count: number };
  runs: { method: string; name: string; config: TrainConfig; cached: boolean; log: Record<string, unknown>[] }[];
  metrics: (SampleMetrics & { method: string; name: string })[];
  /** (FID_full - FID_dt) / FID_full. */
  promotion: number;
  forgetting: { model: string; points: ForgettingPoint[]; svg: string; grid: string | null };
  ewc: DemoEwc;
  extractor: { name: string; file: string | null; sha256: string | null };
  timings: StepTiming[];
  warnings: string[];
}

const esc = (s: string | number): string => escapeXml(String(s));

function fmt(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

function percent(v: number): string {
  return Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%` : 'n/a';
}

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; } th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; } thead { background: #f3f3f3; }
.grids { display: flex; flex-wrap: wrap; gap: 1.2em; } .grids figure { margin: 0; } figcaption { font-size: 0.9em; color: #555; }
img.pixel { image-rendering: pixelated; } img.plot { max-width: 100%; height: auto; }
.note { background: #fff8e1; border-left: 4px solid #f2c94c; padding: 0.5em 0.9em; }
.best { font-weight: bold; } code, pre { background: #f5f5f5; } pre { padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
`;

function metricsTable(d: ReportData): string {
  const fids = d.metrics.map((m) => m.fid).filter(Number.isFinite);
  const best = Math.min(...fids);
  const full = d.metrics.find((m) => m.method === 'full');
  const rows = d.metrics.map((m) => {
    const promo = m.method === 'pretrained' || m.method === 'full' || !full ? '' : percent((full.fid - m.fid) / full.fid);
    const cls = m.fid === best ? ' class="best"' : '';
    return `<tr${cls}><td>${esc(m.name)}</td><td>${fmt(m.fid, 2)}</td><td>${fmt(m.kid, 4)} ± ${fmt(m.kidStd, 4)}</td><td>${m.n}</td><td>${promo}</td></tr>`;
  });
  return `<table id="metrics">
<thead><tr><th>model</th><th>FID (${esc(d.extractor.name)})</th><th>KID ± std</th><th>samples</th><th>relative promotion</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>
<p>Relative promotion, as in the paper's Table 1: (FID<sub>full</sub> − FID<sub>Diff-Tuning</sub>) / FID<sub>full</sub> =
<strong id="promotion">${percent(d.promotion)}</strong> (positive: Diff-Tuning is closer to the target images).</p>`;
}

function gridsSection(d: ReportData): string {
  const s = d.settings;
  const counts = new Map<string, number>();
  for (const c of d.data.gridLabels) counts.set(c, (counts.get(c) ?? 0) + 1);
  const classes = [...counts].map(([c, n]) => `${c} ×${n}`).join(', ');
  const figure = (file: string, title: string, caption: string): string =>
    `<figure><img class="pixel" src="${esc(file)}" alt="${esc(title)}"><figcaption><b>${esc(title)}</b><br>${esc(caption)}</figcaption></figure>`;
  return `<h2>Samples</h2>
<p>The first ${d.data.gridLabels.length} samples of each model's evaluation set, sorted by class (${esc(classes)}).
Every model starts from the same noise x<sub>T</sub> with the same labels (DDIM ${s.evaluation.steps} steps, η = 0, guidance ${s.evaluation.cfg}),
so the grids compare image by image. The pretrained model gets the target's label ids through its own label rows
(what fine-tuning with <code>labels.mode reuse</code> starts from), so its row shows the source domain.</p>
<div class="grids">
${figure('real-target.png', 'real target images', `training images of the same classes (${d.data.name})`)}
${figure('samples-pretrained.png', 'pretrained (source model)', 'before fine-tuning')}
${figure('samples-full.png', 'full fine-tuning', `${s.finetune.steps} steps, uniform t`)}
${figure('samples-diff-tuning.png', 'Diff-Tuning', `${s.finetune.steps} steps, ψ/ξ laws, ${d.bank.count}-sample bank`)}
</div>`;
}

function forgettingSection(d: ReportData): string {
  const rows = d.forgetting.points.map((p) =>
    `<tr><td>${p.split}</td><td>${p.finetunedSteps}</td><td>${p.pretrainedSteps}</td><td>${fmt(p.fid, 2)}</td></tr>`).join('\n');
  return `<h2>Chain of forgetting</h2>
<p>The paper's Figure 1, small: each point samples with the ${esc(d.forgetting.model)} model on the noisy part of the reverse chain and
hands the last fraction <i>s</i> of the steps (the data end, t → 0) to the pretrained model (its unconditional branch).
s = 0 is the fine-tuned model alone, s = 1 the pretrained model alone. The paper's observation: handing over the last
steps costs little (a pretrained denoiser removes light noise from any domain), and the cost grows toward the noise end.
Every point starts from the same x<sub>T</sub> and step noise.</p>
<img class="plot" src="${esc(d.forgetting.svg)}" alt="chain-of-forgetting curve">
<table id="forgetting"><thead><tr><th>s (share handed to the pretrained model)</th><th>fine-tuned steps</th><th>pretrained steps</th><th>FID</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${d.forgetting.grid ? `<figure><img class="pixel" src="${esc(d.forgetting.grid)}" alt="samples along the chain"><figcaption>One row per switch point (top: s = ${d.forgetting.points[0]?.split ?? 0}), the same 8 noises.</figcaption></figure>` : ''}`;
}

function ewcSection(d: ReportData): string {
  const row = (name: string, r: DemoEwc['full']): string =>
    `<tr><td>${esc(name)}</td><td>${r.total.toPrecision(3)}</td><td>${r.changed}</td><td>${r.meanOverChanged.toPrecision(3)}</td></tr>`;
  const ratio = d.ewc['diff-tuning'].total / d.ewc.full.total;
  return `<h2>What each run overwrote (EWC)</h2>
<p>The paper's second forgetting measure (its Figure 5b): EWC = Σ<sub>i</sub> F<sub>i</sub> (θ<sub>i</sub> − θ<sub>0,i</sub>)², where F is the
pretrained model's diagonal Fisher, the mean squared per-sample gradient of its own training loss on the ${d.ewc.items} bank images (null label,
uniform t). It weighs each weight's change by how much the source model's denoising depends on it: lower means less of the
source knowledge was overwritten. Diff-Tuning / full = <strong id="ewc-ratio">${fmt(ratio, 2)}</strong>.</p>
<table id="ewc"><thead><tr><th>model</th><th>EWC</th><th>weights moved</th><th>EWC per moved weight</th></tr></thead>
<tbody>
${row('full fine-tuning', d.ewc.full)}
${row('Diff-Tuning', d.ewc['diff-tuning'])}
</tbody></table>`;
}

function settingsSection(d: ReportData): string {
  const s = d.settings;
  const c = d.source.config;
  const f = s.finetune;
  const rows: [string, string][] = [
    ['source model', `${d.source.file} (sha256 ${d.source.sha256.slice(0, 16)}…): DiT hidden ${c.hiddenSize}, depth ${c.depth}, ${c.numHeads} heads, patch ${c.patchSize}, ${c.inputSize}×${c.inputSize}×${c.inChannels}, ${c.numClasses} classes, ${(d.source.parameters / 1e6).toFixed(2)}M parameters`],
    ['target data', `${d.data.name} (${d.data.dir}), ${d.data.classes.length} classes`],
    ['training images', `${Object.values(d.data.train).reduce((a, b) => a + b, 0)}, stratified by class, seed ${s.seed}, drawn from the dataset's seeded train split (seed 0, 10% eval): ${Object.entries(d.data.train).map(([k, v]) => `${k} ${v}`).join(', ')}`],
    ['FID/KID reference', `the ${d.data.heldOut} images not used for training (the whole dataset minus the training set; includes the DIR:eval split)`],
    ['knowledge bank', `${d.bank.count} samples of the source model, uniform source classes, DDIM ${s.bank.steps} steps, guidance ${s.bank.cfg}, seed ${s.seed}; replayed with the null label`],
    ['fine-tuning (both)', `${f.steps} steps, batch ${f.batch}, AdamW lr ${f.lr}, weight decay 0, gradient clipping ${f.gradClip}, EMA ${f.emaDecay.toPrecision(5)} from the pretrained weights (${(100 * f.emaDecay ** f.steps).toFixed(1)}% of them left at the end), seed ${s.seed}, random flips, label rows reused`],
    ['Diff-Tuning', `τ = ${f.tau}; ${f.batch - Math.floor(0.2 * f.batch)} target + ${Math.floor(0.2 * f.batch)} replay samples per batch; L = L_target + 0.1 · L_replay`],
    ['evaluation', `${s.evaluation.samples} samples per model, labels in the held-out class proportions, DDIM ${s.evaluation.steps} steps, η 0, guidance ${s.evaluation.cfg} (eps channels), EMA weights`],
    ['feature extractor', `${d.extractor.name}${d.extractor.file ? ` (${d.extractor.file}${d.extractor.sha256 ? `, sha256 ${d.extractor.sha256.slice(0, 16)}…` : ''})` : ''}; KID: 100 subsets`],
    ['forgetting probe', `${d.forgetting.model} model, ${s.forgetting.samples} samples per point, DDIM ${s.forgetting.steps} steps, splits ${s.forgetting.splits.join(', ')}`],
  ];
  const timings = d.timings.map((t) => `<tr><td>${esc(t.title)}</td><td>${formatSeconds(t.seconds)}</td></tr>`).join('\n');
  const total = d.timings.reduce((a, t) => a + t.seconds, 0);
  const configs = d.runs.map((r) =>
    `<details><summary>trainer config of the ${esc(r.name)} run${r.cached ? ' (reused from an earlier demo run)' : ''}</summary><pre>${esc(JSON.stringify(r.config, null, 2))}</pre></details>`).join('\n');
  return `<h2>Settings</h2>
<table id="settings"><tbody>
${rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td style="text-align:left">${esc(v)}</td></tr>`).join('\n')}
</tbody></table>
${configs}
<details><summary>demo settings (JSON)</summary><pre>${esc(JSON.stringify(s, null, 2))}</pre></details>
<h2>Time</h2>
<table id="timings"><thead><tr><th>step</th><th>time</th></tr></thead><tbody>
${timings}
<tr><td><b>total</b></td><td><b>${formatSeconds(total)}</b></td></tr>
</tbody></table>`;
}

export function renderReportHtml(d: ReportData): string {
  const s = d.settings;
  const warnings = d.warnings.map((w) => `<p class="note">${esc(w)}</p>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>difftune demo: Diff-Tuning vs full fine-tuning on ${esc(d.data.name)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Diff-Tuning vs full fine-tuning on ${esc(d.data.name)}</h1>
<p>A pretrained DiT is fine-tuned on ${Object.values(d.data.train).reduce((a, b) => a + b, 0)} ${esc(d.data.name)} images twice, with the same budget
(${s.finetune.steps} steps) and seed: once by standard (full) fine-tuning and once with Diff-Tuning
(Zhong et al., NeurIPS 2024, “Diffusion Tuning: Transferring Diffusion Models via Chain of Forgetting”).${s.quick ? ' This is the <b>--quick</b> run: a pipeline check with a tiny budget, not a measurement.' : ''}</p>
${warnings}

<h2>The method</h2>
<p>A diffusion model denoises along a chain from pure noise (t = T−1) to data (t = 0). What a pretrained denoiser knows does not
transfer equally along that chain: near the data end it removes light noise from almost any image, whatever the domain, while near the
noise end it decides what the image will be, and that must be relearned for a new domain. The paper calls this the <i>chain of forgetting</i>.</p>
<p>Diff-Tuning turns it into two objectives trained in one batch:</p>
<ul>
<li><b>knowledge retention</b>: before fine-tuning, a small <i>knowledge bank</i> is sampled once from the frozen pretrained model
(here ${d.bank.count} images). Part of every batch replays it with the null label, with timesteps drawn from ξ(t) ∝ (T−t)<sup>τ</sup>, so the
model keeps its data-end skills;</li>
<li><b>knowledge reconsolidation</b>: the target images are trained with timesteps drawn from ψ(t) ∝ (t+1)<sup>τ</sup>, spending the
budget where the model must adapt, toward the noise end.</li>
</ul>
<p>Standard fine-tuning draws t uniformly and has no bank. Everything else (model, data, optimizer, steps, seed) is the same for both runs.</p>
<img class="plot" src="timesteps.svg" alt="timestep laws psi and xi">

<h2>Results</h2>
${metricsTable(d)}
<p>FID/KID compare ${esc(d.extractor.name)} features of each model's samples with the ${d.data.heldOut} held-out target images (lower is better).</p>
${gridsSection(d)}

<h2>Training losses</h2>
<p>From each run's <code>log.jsonl</code>. The two target losses are averaged over different timestep laws (uniform for full
fine-tuning, ψ for Diff-Tuning; the loss is larger at small t), so compare each curve's trend rather than their levels.
The replay loss is Diff-Tuning's retention term on the bank, weighted by 0.1 in the total.</p>
<img class="plot" src="loss.svg" alt="training loss curves">

${forgettingSection(d)}

${ewcSection(d)}

${settingsSection(d)}
<p>Made by <code>difftune demo${s.quick ? ' --quick' : ''}</code>. The runs, bank, data subsets and raw samples are beside this folder
(<code>runs/</code>, <code>bank/</code>, <code>data/</code>, <code>samples/*.safetensors</code>): e.g.
<code>difftune eval --samples samples/full.safetensors --ref data/heldout</code> recomputes a row of the table.</p>
</body>
</html>
`;
}
