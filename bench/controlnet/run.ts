// `npm run bench:controlnet`: the small-scale analogue of Diff-Tuning's ControlNet experiment. A
// DiT-ControlNet on the shipped source DiT (frozen) is trained on one target dataset for each of the
// five conditions with full fine-tuning and with Diff-Tuning (psi-sampled target pairs + xi-sampled
// replay of the source model's samples with their extracted conditions), for several seeds; the
// sudden-convergence detector gives each run's convergence step. Each finished run is one line of
// OUT/controlnet-runs.jsonl and is skipped when the benchmark is started again (a run that was
// interrupted resumes from its last checkpoint). Writes OUT/controlnet.json, OUT/controlnet.md and
// OUT/controlnet/<condition>.svg (every run's distance curve with the threshold).
import * as fs from 'fs';
import * as path from 'path';
import { configureThreads } from '../../src/cli/threads';
import { sha256File } from '../../src/data/hash';
import { datasetFingerprint } from '../../src/eval/reference-stats';
import { readDiTConfig, siblingConfig } from '../../src/models/dit-io';
import { JsonlLogger, readJsonl } from '../../src/report/jsonl';
import * as torch from '../../src/torch';
import { noteBlas } from '../child';
import { Device } from '../../src/torch';
import { resolveControlNetConfig } from '../../src/tuning/controlnet-config';
import { disposeControlNetRun, trainControlNet } from '../../src/tuning/controlnet-run';
import { convergencePlot } from '../../src/tuning/convergence';
import { scaledEmaDecay } from '../../src/tuning/ema-budget';
import { writeFileAtomic } from '../../src/tuning/write-atomic';
import { settingsOrExit, shellQuote } from '../args';
import { ensureBank } from '../transfer/bank-cache';
import { aggregate, ControlRunRecord, renderMarkdown } from './aggregate';
import { ControlExperiment, ControlRunSpec, estimateSeconds, planRuns, runKey } from './plan';
import { BenchSettings, parseSettings, USAGE } from './settings';

const log = (m: string): void => console.log(m);

/** Run records of a results log (none when it does not exist); malformed run lines throw naming the line. */
export function readRecords(file: string): ControlRunRecord[] {
  if (!fs.existsSync(file)) return [];
  return readJsonl(file).flatMap((r, i) => {
    if (r.kind !== 'run') return [];
    if (typeof r.key !== 'string' || typeof r.condition !== 'string' || typeof r.method !== 'string' || typeof r.steps !== 'number' ||
      !(r.convergenceStep === null || typeof r.convergenceStep === 'number')) {
      throw new Error(`${file}: record ${i + 1} (${String(r.id)}): expected key, condition, method, steps and convergenceStep (number or null)`);
    }
    return [r as unknown as ControlRunRecord];
  });
}

function checkInputs(s: BenchSettings): { sourceConfig: string; dataDir: string } {
  if (!fs.existsSync(s.source)) throw new Error(`--source ${s.source}: not found (the shipped source model is assets/source/iconnet-dit.safetensors)`);
  const sourceConfig = s.sourceConfig ?? siblingConfig(s.source);
  if (!sourceConfig) throw new Error(`--source ${s.source}: no config JSON beside it; pass --source-config FILE`);
  const dataDir = path.join(s.dataRoot, s.target);
  if (!fs.existsSync(dataDir)) throw new Error(`--target ${s.target}: ${dataDir} does not exist (build it with \`difftune datasets build ${s.target}\`)`);
  return { sourceConfig, dataDir };
}

function formatSeconds(x: number): string {
  return x < 120 ? `${x.toFixed(0)} s` : x < 7200 ? `${(x / 60).toFixed(1)} min` : `${(x / 3600).toFixed(1)} h`;
}

/** The trainer + ControlNet configs of one run. */
export function runConfig(s: BenchSettings, r: ControlRunSpec, o: { sourceConfig: string; dataDir: string; bankDir: string | null; runDir: string }) {
  return resolveControlNetConfig({
    values: {
      method: r.method,
      model: { ckpt: s.source, config: o.sourceConfig },
      data: { target: o.dataDir, split: 'train', bank: r.method === 'diff-tuning' ? o.bankDir : null },
      optim: { lr: s.lr, batchSize: s.batch },
      ema: { decay: scaledEmaDecay(s.steps) },
      run: {
        steps: s.steps, seed: r.seed, device: s.device, out: o.runDir, logEvery: Math.max(1, Math.floor(s.steps / 20)),
        checkpointEvery: Math.max(1, Math.ceil(s.steps / 4)), keepCheckpoints: 1, previewEvery: s.steps,
      },
      controlnet: {
        condition: r.condition, blocks: s.blocks, labels: 'null', replayCondition: 'extracted', evalEvery: s.evalEvery,
        evalSamples: s.evalSamples, evalSteps: s.evalSteps, evalSeed: 0, evalWeights: 'raw', thresholdFraction: s.thresholdFraction,
      },
    },
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const s = settingsOrExit('bench:controlnet', USAGE, argv, (a) => parseSettings(a, { cudaAvailable: torch.cuda.isAvailable() }));
  if (!s) return;
  const command = ['npm', 'run', 'bench:controlnet', '--', ...argv].map(shellQuote).join(' ');
  const { sourceConfig, dataDir } = checkInputs(s);
  configureThreads();
  noteBlas('ts', { blas: torch.describeBlas() }); // one side only: this bench has no PyTorch peer
  const sourceSha256 = sha256File(s.source);
  const source = readDiTConfig(sourceConfig);
  const experiment: ControlExperiment = {
    sourceSha256, dataHash: datasetFingerprint(dataDir), steps: s.steps, batch: s.batch, lr: s.lr, blocks: s.blocks,
    evalEvery: s.evalEvery, evalSamples: s.evalSamples, evalSteps: s.evalSteps, thresholdFraction: s.thresholdFraction,
    bank: { size: s.bankSize, steps: s.bankSteps, cfg: s.cfg },
  };
  const planned = planRuns(s);
  const logFile = path.join(s.out, 'controlnet-runs.jsonl');
  const done = new Map(readRecords(logFile).map((r) => [r.key, r]));
  const pending = s.reportOnly ? [] : planned.filter((r) => !done.has(runKey(r, experiment)));
  const cuda = s.device.startsWith('cuda');
  // Rough per-step costs of the shipped source (hidden 192, depth 6) at batch 32: measured orders of magnitude, not promises.
  const estimate = estimateSeconds(pending.length, s, {
    stepSeconds: (cuda ? 0.03 : 0.5) * (s.batch / 32), sampleStepSeconds: cuda ? 0.0005 : 0.004, bankNeeded: pending.some((r) => r.method === 'diff-tuning'),
  });
  log(`bench:controlnet (${s.budget} budget, ${s.device}): ${planned.length} runs (${s.conditions.length} conditions x full, diff-tuning x ${s.seeds} seeds) ` +
    `on ${s.target}; ${planned.length - pending.length} already in ${logFile}, ${pending.length} to run: ${pending.length * s.steps} training steps at batch ${s.batch}, ` +
    `an evaluation every ${s.evalEvery} steps (${s.evalSamples} samples, DDIM ${s.evalSteps}); roughly ${formatSeconds(estimate)}`);
  log(`source ${s.source} (DiT hidden ${source.hiddenSize}, depth ${source.depth}, patch ${source.patchSize}, sha256 ${sourceSha256.slice(0, 12)}); ` +
    `ControlNet copies ${s.blocks ?? Math.max(1, Math.floor(source.depth / 2))} blocks`);
  if (s.dryRun) {
    for (const r of pending) log(`  ${r.id}`);
    return;
  }

  const bankDir = pending.some((r) => r.method === 'diff-tuning')
    ? await ensureBank({ source: s.source, sourceConfig, sourceSha256, work: s.work, sampler: 'ddim', n: s.bankSize, steps: s.bankSteps, cfg: s.cfg, device: s.device as Device, log })
    : null;
  const started = Date.now();
  for (const [i, r] of pending.entries()) {
    const key = runKey(r, experiment);
    const runDir = path.join(s.work, 'runs', r.condition, r.method, `seed${r.seed}-${key.slice(0, 8)}`);
    log(`[${i + 1}/${pending.length}] ${r.id}`);
    const { train, controlnet } = runConfig(s, r, { sourceConfig, dataDir, bankDir, runDir });
    const res = await trainControlNet(train, controlnet, { resume: true, log: (m) => log(`  ${m}`), progress: false });
    const conv = res.convergence!;
    const record: ControlRunRecord = {
      kind: 'run', key, id: r.id, condition: r.condition, method: r.method, seed: r.seed, convergenceStep: conv.convergence_step,
      steps: s.steps, evalEvery: s.evalEvery, threshold: conv.threshold, reference: conv.reference, series: conv.series,
      trainSeconds: res.trainSeconds, stepSeconds: res.trainSeconds / Math.max(1, s.steps), device: s.device, command, finished: new Date().toISOString(),
    };
    disposeControlNetRun(res);
    const jl = new JsonlLogger(logFile, { append: true });
    try {
      jl.write(record as unknown as Record<string, unknown>);
    } finally {
      jl.close();
    }
    done.set(key, record);
    fs.rmSync(path.join(runDir, 'checkpoints'), { recursive: true, force: true });
    log(`[${i + 1}/${pending.length}] ${r.id}: convergence step ${record.convergenceStep ?? `none within ${s.steps}`} ` +
      `(threshold ${record.threshold.toPrecision(4)}; ${record.stepSeconds.toFixed(3)} s/step; ${formatSeconds((Date.now() - started) / 1000)} so far)`);
  }

  const byId = new Map<string, ControlRunRecord>();
  for (const r of planned) {
    const rec = done.get(runKey(r, experiment));
    if (rec) byId.set(r.id, rec);
  }
  const agg = aggregate(byId, { conditions: s.conditions, seeds: s.seeds });
  const records = [...byId.values()];
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const settings = {
    budget: s.budget, device: s.device, source: { file: s.source, sha256: sourceSha256, config: sourceConfig }, target: { name: s.target, dir: dataDir, split: 'train' },
    steps: s.steps, seeds: s.seeds, batch: s.batch, lr: s.lr, blocks: s.blocks ?? Math.max(1, Math.floor(source.depth / 2)), ema_decay: scaledEmaDecay(s.steps),
    diff_tuning: { tau: 1, replay_ratio: 0.2, retention_weight: 0.1, replay_condition: 'extracted from the bank image', replay_label: 'null' },
    bank: { size: s.bankSize, sampler: `ddim${s.bankSteps}`, cfg: s.cfg, labels: 'uniform over source classes' },
    labels: 'null (the base model\'s unconditional label) for every sample',
    convergence: {
      every: s.evalEvery, samples: s.evalSamples, sampler: `ddim${s.evalSteps}`, weights: 'raw (not EMA)', eval_seed: 0,
      threshold: `matched + ${s.thresholdFraction} x (shuffled - matched) on the held-out real pairs`,
    },
  };
  const json = {
    ...agg, settings, command, run_commands: [...new Set(records.map((r) => r.command).filter(Boolean))],
    timing: { runs: records.length, mean_step_seconds: mean(records.map((r) => r.stepSeconds)), this_session_seconds: (Date.now() - started) / 1000 },
    thresholds: Object.fromEntries(s.conditions.map((c) => [c, records.find((r) => r.condition === c)?.threshold ?? null])),
    generated: new Date().toISOString(),
  };
  const markdown = renderMarkdown(agg, {
    // A report-only pass names the commands that ran the runs, not itself.
    conditions: s.conditions, command: s.reportOnly ? json.run_commands.join('\n') : command,
    settingsLines: [
      `budget \`${s.budget}\` on ${s.device}; base \`${s.source}\` (DiT hidden ${source.hiddenSize}, depth ${source.depth}, patch ${source.patchSize}, ` +
        `${source.inputSize}x${source.inputSize}, sha256 ${sourceSha256.slice(0, 12)}), frozen; the ControlNet copies its first ${settings.blocks} blocks`,
      `target \`${dataDir}\` (train split; the eval split's images give the fixed held-out conditions); labels: the base's null label`,
      `${s.steps} steps at batch ${s.batch}, AdamW lr ${s.lr}, ${s.seeds} seeds (0..${s.seeds - 1}) per condition and method`,
      `Diff-Tuning: target t ∝ (t+1), replay floor(0.2·batch) items of a ${s.bankSize}-sample bank of the source model (DDIM ${s.bankSteps}, guidance ${s.cfg}) ` +
        `with conditions extracted from them and t ∝ (T−t), L = L_target + 0.1·L_replay`,
      `convergence: every ${s.evalEvery} steps, ${s.evalSamples} fixed held-out conditions sampled with fixed noise (DDIM ${s.evalSteps}, the trained weights), ` +
        `condition re-extracted, MSE to the input; threshold = matched + ${s.thresholdFraction}·(shuffled − matched) of the real pairs; step = first evaluation under it`,
    ],
  });
  fs.mkdirSync(path.join(s.out, 'controlnet'), { recursive: true });
  for (const c of s.conditions) {
    const rs = records.filter((r) => r.condition === c);
    if (!rs.length) continue;
    writeFileAtomic(path.join(s.out, 'controlnet', `${c}.svg`), convergencePlot(
      rs.map((r) => ({ label: `${r.method} seed ${r.seed}`, series: r.series })), rs[0].threshold, `${c}: condition distance of samples vs training step`));
  }
  writeFileAtomic(path.join(s.out, 'controlnet.json'), JSON.stringify(json, null, 2) + '\n');
  writeFileAtomic(path.join(s.out, 'controlnet.md'), markdown);
  console.log(`\n${markdown}`);
  log(`wrote ${path.join(s.out, 'controlnet.json')} and ${path.join(s.out, 'controlnet.md')}`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`bench:controlnet: ${(e as Error).message}`);
    process.exit(1);
  });
}
