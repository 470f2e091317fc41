// bench/controlnet's pure parts: flags and presets, the quick plan and its keys, the per-run configs,
// the aggregation into controlnet.json (censored runs, speed-ups) and its table, the results log.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { aggregate, ControlRunRecord, countedSteps, renderMarkdown, speedup } from '../bench/controlnet/aggregate';
import { ControlExperiment, estimateSeconds, planRuns, runId, runKey } from '../bench/controlnet/plan';
import { readRecords, runConfig } from '../bench/controlnet/run';
import { parseSettings, PRESETS } from '../bench/controlnet/settings';
import { tempDir } from './helpers/train-fixture';

test('settings: budget presets, flags override them, bad flags name themselves', () => {
  const quick = parseSettings(['--budget', 'quick'], { cudaAvailable: false });
  assert.equal(quick.budget, 'quick');
  assert.equal(quick.steps, PRESETS.quick.steps);
  assert.deepEqual(quick.conditions, ['canny', 'sketch', 'segmentation', 'grayscale', 'lowres']);
  assert.equal(quick.target, 'twemoji');
  assert.equal(quick.device, 'cpu');
  assert.equal(parseSettings([], { cudaAvailable: false }).budget, 'cpu');
  assert.equal(parseSettings([], { cudaAvailable: true }).budget, 'gpu');
  assert.equal(parseSettings([], { cudaAvailable: true }).device, 'cuda');
  const s = parseSettings(['--budget', 'cpu', '--steps', '400', '--seeds', '5', '--conditions', 'canny,lowres', '--lr', '3e-4', '--blocks', '2',
    '--eval-every', '20', '--threshold-fraction', '0.3', '--target', 'flags', '--dry-run'], { cudaAvailable: false });
  assert.deepEqual([s.steps, s.seeds, s.conditions, s.lr, s.blocks, s.evalEvery, s.thresholdFraction, s.target, s.dryRun],
    [400, 5, ['canny', 'lowres'], 3e-4, 2, 20, 0.3, 'flags', true]);
  assert.equal(s.evalSamples, PRESETS.cpu.evalSamples, 'unset numbers come from the preset');
  const bad: [string[], RegExp][] = [
    [['--conditions', 'canny,depth'], /--conditions: 'depth' is not a condition/],
    [['--conditions', 'canny,canny'], /given twice/],
    [['--budget', 'huge'], /--budget must be quick, cpu, gpu/],
    [['--steps', '0'], /--steps must be a positive integer/],
    [['--steps', '10', '--eval-every', '20'], /--eval-every \(20\) is longer than the run/],
    [['--batch', '4'], /gives Diff-Tuning no replay items/],
    [['--threshold-fraction', '1.5'], /--threshold-fraction must be a number in \(0, 1\]/],
    [['--device', 'tpu'], /--device must be cpu, cuda or cuda:N/],
    [['--frobnicate'], /unknown flag '--frobnicate'/],
  ];
  for (const [argv, re] of bad) assert.throws(() => parseSettings(argv, { cudaAvailable: false }), re, argv.join(' '));
});

test('the quick plan: five conditions x full, diff-tuning, seed-major; keys change with what the number depends on', () => {
  const s = parseSettings(['--budget', 'quick', '--seeds', '2'], { cudaAvailable: false });
  const plan = planRuns(s);
  assert.equal(plan.length, 20);
  assert.deepEqual(plan.slice(0, 3).map((r) => r.id), ['canny/full/seed=0', 'canny/diff-tuning/seed=0', 'sketch/full/seed=0']);
  assert.ok(plan.slice(0, 10).every((r) => r.seed === 0) && plan.slice(10).every((r) => r.seed === 1), 'seed-major');
  assert.equal(new Set(plan.map((r) => r.id)).size, 20);
  const e: ControlExperiment = {
    sourceSha256: 'a', dataHash: 'b', steps: 10, batch: 32, lr: 1e-4, blocks: null, evalEvery: 5, evalSamples: 8, evalSteps: 5,
    thresholdFraction: 0.5, bank: { size: 32, steps: 10, cfg: 1.5 },
  };
  const full = plan[0];
  const dt = plan[1];
  assert.notEqual(runKey(full, e), runKey(dt, e));
  assert.notEqual(runKey(full, e), runKey(full, { ...e, steps: 11 }));
  assert.notEqual(runKey(full, e), runKey(full, { ...e, thresholdFraction: 0.4 }));
  // The bank only matters to the runs that replay it.
  assert.equal(runKey(full, e), runKey(full, { ...e, bank: { size: 64, steps: 10, cfg: 1.5 } }));
  assert.notEqual(runKey(dt, e), runKey(dt, { ...e, bank: { size: 64, steps: 10, cfg: 1.5 } }));
  // Estimate: runs x (steps x step time + evaluations x samples x DDIM steps x sample-step time) + the bank.
  assert.equal(estimateSeconds(2, { steps: 10, evalEvery: 5, evalSamples: 8, evalSteps: 5, bankSize: 32, bankSteps: 10 },
    { stepSeconds: 1, sampleStepSeconds: 0.01, bankNeeded: true }), 2 * (10 + 3 * 40 * 0.01) + 32 * 10 * 2 * 0.01);
});

test('a run config: the method, the bank only for diff-tuning, the ControlNet section, the scaled EMA', () => {
  const s = parseSettings(['--budget', 'quick'], { cudaAvailable: false });
  const where = { sourceConfig: 'assets/source/iconnet-dit.json', dataDir: 'data/twemoji', bankDir: 'bank', runDir: 'runs/x' };
  const full = runConfig(s, { condition: 'sketch', method: 'full', seed: 2 }, where);
  assert.equal(full.train.method, 'full');
  assert.equal(full.train.data.bank, null);
  assert.equal(full.train.data.split, 'train');
  assert.equal(full.train.run.seed, 2);
  assert.equal(full.controlnet.condition, 'sketch');
  assert.equal(full.controlnet.evalEvery, PRESETS.quick.evalEvery);
  assert.equal(full.controlnet.evalWeights, 'raw');
  const dt = runConfig(s, { condition: 'sketch', method: 'diff-tuning', seed: 0 }, where);
  assert.equal(dt.train.data.bank, 'bank');
  assert.equal(dt.train.objective.replayRatio, 0.2);
  assert.equal(dt.train.objective.retentionWeight, 0.1);
  assert.ok(dt.train.ema.decay < 0.9999);
});

function record(condition: string, method: 'full' | 'diff-tuning', seed: number, step: number | null): ControlRunRecord {
  return {
    kind: 'run', key: `${condition}-${method}-${seed}`, id: runId({ condition: condition as 'canny', method, seed }), condition: condition as 'canny', method, seed,
    convergenceStep: step, steps: 1000, evalEvery: 50, threshold: 0.4, reference: { matched: 0, shuffled: 0.8 }, series: [],
    trainSeconds: 1, stepSeconds: 0.001, device: 'cpu', finished: 'now',
  };
}

test('aggregate: mean steps per cell, censored runs as steps + interval, speed-up per condition and on average', () => {
  const recs = [
    record('canny', 'full', 0, 400), record('canny', 'full', 1, 600), record('canny', 'diff-tuning', 0, 300), record('canny', 'diff-tuning', 1, 300),
    record('sketch', 'full', 0, null), record('sketch', 'full', 1, 900), record('sketch', 'diff-tuning', 0, 700), record('sketch', 'diff-tuning', 1, 800),
    record('lowres', 'full', 0, 200),
  ];
  const j = aggregate(new Map(recs.map((r) => [r.id, r])), { conditions: ['canny', 'sketch', 'lowres'], seeds: 2 });
  assert.deepEqual(j.conditions.canny, { full: 500, 'diff-tuning': 300 });
  assert.equal(countedSteps(recs[4]), 1050);
  assert.deepEqual(j.conditions.sketch, { full: 975, 'diff-tuning': 750 });
  assert.equal(j.details.sketch.full!.censored, 1);
  assert.equal(j.details.canny.speedup, 0.4);
  assert.ok(Math.abs(j.details.sketch.speedup! - 225 / 975) < 1e-12);
  assert.equal(j.details.lowres.speedup, null, 'no diff-tuning run yet');
  assert.ok(Math.abs(j.average_speedup! - (0.4 + 225 / 975) / 2) < 1e-12);
  assert.ok(Math.abs(j.speedup_of_total_steps! - (1475 - 1050) / 1475) < 1e-12);
  assert.equal(j.complete, false);
  assert.deepEqual(j.missing, ['lowres/full/seed=1', 'lowres/diff-tuning/seed=0', 'lowres/diff-tuning/seed=1']);
  assert.throws(() => speedup(0, 1), /must be > 0/);
  const md = renderMarkdown(j, { conditions: ['canny', 'sketch', 'lowres'], settingsLines: ['x'], command: 'npm run bench:controlnet' });
  assert.match(md, /\| canny \| 500\.0 ± 141\.4 \| 300\.0 ± 0\.0 \| \+40\.0% \|/);
  assert.match(md, /1\/2 not converged/);
  assert.match(md, /Incomplete: 3 runs missing/);
});

test('the results log: run lines are read back, other lines skipped, malformed run lines named', () => {
  const dir = tempDir('bench-cn');
  const file = path.join(dir, 'controlnet-runs.jsonl');
  assert.deepEqual(readRecords(file), []);
  fs.writeFileSync(file, `${JSON.stringify(record('canny', 'full', 0, 100))}\n{"kind":"note"}\n`);
  assert.equal(readRecords(file)[0].convergenceStep, 100);
  fs.appendFileSync(file, `${JSON.stringify({ ...record('canny', 'full', 1, 100), convergenceStep: 'soon' })}\n`);
  assert.throws(() => readRecords(file), /record 3 \(canny\/full\/seed=1\)/);
});
