// bench/transfer's pure parts: mean ± std, relative promotion, the JSON shape of transfer.json,
// the Markdown table, stratified subsampling, the run plan and its keys, the EMA rule, flags.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { aggregate, meanStd, monotoneRise, relativePromotion } from '../bench/transfer/aggregate';
import { scaledEmaDecay } from '../src/tuning/ema-budget';
import { decimalsFor, formatMeanStd, formatPercent, mainTable, pairedTable, renderMarkdown } from '../bench/transfer/markdown';
import { formatP, signTestP } from '../bench/transfer/paired';
import { MAIN_METHODS, METHOD_NAMES } from '../bench/transfer/methods';
import { bankSweepRun, methodRun, planRuns, RunSpec, runId } from '../bench/transfer/plan';
import { appendRunRecord, Experiment, readRunRecords, recordsByKey, RunRecord, runKey } from '../bench/transfer/results-log';
import { parseSettings, PRESETS, TESTBED_SOURCE, TESTBED_TARGETS } from '../bench/transfer/settings';
import { ensureTargetSplit } from '../bench/transfer/target-split';
import { curveOfLog } from '../bench/transfer/one-run';
import { encodePng } from '../src/report/png';
import sharp from 'sharp';
import { stratifiedCounts, stratifiedSubsample } from '../bench/transfer/subsample';

const close = (a: number, b: number, tol: number, what = ''): void => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b}`);

test('meanStd: mean and the n − 1 sample standard deviation', () => {
  // 2,4,4,4,5,5,7,9: mean 5, squared deviations sum to 32 -> sample std sqrt(32/7).
  const m = meanStd([2, 4, 4, 4, 5, 5, 7, 9]);
  assert.equal(m.mean, 5);
  close(m.std, Math.sqrt(32 / 7), 1e-12, 'std');
  assert.deepEqual(meanStd([3.5]), { mean: 3.5, std: 0 });
  close(meanStd([1, 2]).std, Math.SQRT1_2, 1e-12);
  assert.throws(() => meanStd([]), /no values/);
});

test('relativePromotion: (FID_full − FID_method) / FID_full', () => {
  assert.equal(relativePromotion(20, 15), 0.25);
  assert.equal(relativePromotion(10, 12), -0.2);
  // The paper's headline: 16.59 -> about 12.28 is a 26% promotion.
  close(relativePromotion(16.59, 16.59 * 0.74), 0.26, 1e-12);
  assert.throws(() => relativePromotion(0, 1), /must be > 0/);
});

test('monotoneRise counts decreases', () => {
  assert.deepEqual(monotoneRise([1, 1, 2, 5]), { monotone: true, decreases: 0 });
  assert.deepEqual(monotoneRise([1, 3, 2, 5, 4]), { monotone: false, decreases: 2 });
  assert.deepEqual(monotoneRise([1, 0.95, 2], 0.1), { monotone: true, decreases: 0 });
});

test('scaledEmaDecay keeps the reference residual 0.9999^24000 = 0.0907 of the pretrained weights', () => {
  assert.equal(scaledEmaDecay(24000), 0.9999);
  assert.equal(scaledEmaDecay(50000), 0.9999);
  // 0.9999^10 by the binomial series: 1 - 10e-4 + 45e-8 - 120e-12 + 210e-16.
  close(scaledEmaDecay(2400), 1 - 10e-4 + 45e-8 - 120e-12 + 210e-16, 1e-15, 'decay(2400)');
  // ln 0.9999 = -(1e-4 + 5e-9 + 3.3e-13 + ...), so 0.9999^24000 = exp(-2.400120008) = 0.0907070.
  for (const steps of [20, 500, 1000, 5000]) close(scaledEmaDecay(steps) ** steps, Math.exp(-2.400120008), 1e-9, `residual at ${steps}`);
  close(Math.exp(-2.400120008), 0.0907070, 1e-7);
  assert.throws(() => scaledEmaDecay(0), /positive integer/);
});

test('stratifiedCounts: largest remainder, at least one per class, capped by class sizes', () => {
  // Shares 1.5, 1.5, 2.0: floors 1, 1, 2; the one left goes to the first of the tied remainders.
  assert.deepEqual(stratifiedCounts([3, 3, 4], 5), [2, 1, 2]);
  // A rare class still gets one image (its share 0.0099 would round to 0).
  assert.deepEqual(stratifiedCounts([1, 1000], 10), [1, 9]);
  assert.deepEqual(stratifiedCounts([5, 0, 7], 100), [5, 0, 7]);
  // Fewer images than classes: no minimum; the largest shares win.
  assert.deepEqual(stratifiedCounts([10, 30, 60], 2), [0, 1, 1]);
  const counts = [85, 160, 263, 131, 266, 364, 171, 250, 220]; // twemoji's classes
  const total = counts.reduce((a, b) => a + b, 0);
  const take = stratifiedCounts(counts, 500);
  assert.equal(take.reduce((a, b) => a + b, 0), 500);
  take.forEach((t, k) => assert.ok(Math.abs(t - (500 * counts[k]) / total) < 1, `class ${k}: ${t} vs share ${(500 * counts[k]) / total}`));
  assert.throws(() => stratifiedCounts([3], 0), /positive integer/);
});

test('stratifiedSubsample: deterministic, stratified, seeded', () => {
  const labels = Array.from({ length: 400 }, (_, i) => (i * 7) % 5 === 0 ? 0 : i % 3 === 0 ? 1 : 2);
  const a = stratifiedSubsample(labels, 60, 0);
  assert.deepEqual(stratifiedSubsample(labels, 60, 0), a);
  assert.notDeepEqual(stratifiedSubsample(labels, 60, 1), a);
  assert.equal(a.length, 60);
  assert.equal(new Set(a).size, 60);
  assert.deepEqual(a, [...a].sort((x, y) => x - y));
  assert.ok(a.every((i) => Number.isInteger(i) && i >= 0 && i < labels.length));
  const perClass = [0, 1, 2].map((k) => a.filter((i) => labels[i] === k).length);
  const classSizes = [0, 1, 2].map((k) => labels.filter((l) => l === k).length);
  assert.deepEqual(perClass, stratifiedCounts(classSizes, 60));
  // Asking for everything gives everything.
  assert.deepEqual(stratifiedSubsample(labels, 1000, 3), labels.map((_, i) => i));
});

const SETTINGS = {
  targets: ['a', 'b'], methods: [...METHOD_NAMES], parts: ['table', 'tau', 'bank', 'forgetting'] as ('table' | 'tau' | 'bank' | 'forgetting')[], seeds: 2, sweepSeeds: 1,
  bankSize: 32, tauValues: [0, 0.5, 1, 1.5, 2], bankSizes: [0, 16, 32], ablationTarget: 'a', sweepTarget: 'a',
};

test('planRuns: every method on the same seeds, shared runs counted once', () => {
  const runs = planRuns(SETTINGS);
  // table: 2 pretrained + 2 seeds x (2 targets x 4 methods + 2 ablations) = 22; tau: 5 minus tau 1 = 4;
  // bank: 3 minus size 0 (reconsolidation-only) and size 32 (the table's diff-tuning) = 1; forgetting: the table's full run.
  assert.equal(runs.length, 27);
  assert.equal(new Set(runs.map((r) => r.id)).size, runs.length);
  for (const target of ['a', 'b']) {
    for (const method of MAIN_METHODS) {
      assert.deepEqual(runs.filter((r) => r.target === target && r.method === method && r.parts.includes('table')).map((r) => r.seed), [0, 1]);
    }
  }
  const dt = runs.find((r) => r.id === runId(methodRun('a', 'diff-tuning', { tau: 1, bankSize: 32, seed: 0 })))!;
  assert.deepEqual(dt.parts, ['table', 'tau', 'bank']);
  assert.deepEqual(bankSweepRun('a', 0, 0), { target: 'a', method: 'reconsolidation-only', tau: 1, bankSize: 0, seed: 0 });
  // Fields a method ignores do not make new runs.
  assert.deepEqual(methodRun('a', 'full', { tau: 2, bankSize: 99, seed: 3 }), { target: 'a', method: 'full', tau: null, bankSize: 0, seed: 3 });
  assert.throws(() => methodRun('a', 'diff-tuning', { tau: 1, bankSize: 0, seed: 0 }), /bank size/);
  assert.equal(planRuns({ ...SETTINGS, parts: ['tau'] }).length, 5);
  // --methods narrows the table (a diagnostic of one method) and keeps the pretrained row.
  const fullOnly = planRuns({ ...SETTINGS, methods: ['full'], parts: ['table'] });
  assert.deepEqual(fullOnly.map((r) => `${r.target}/${r.method}/${r.seed}`).sort(),
    ['a/full/0', 'a/full/1', 'a/pretrained/0', 'b/full/0', 'b/full/1', 'b/pretrained/0']);
  const ablation = planRuns({ ...SETTINGS, methods: ['retention-only'], parts: ['table'] }).filter((r) => r.method !== 'pretrained');
  assert.deepEqual(ablation.map((r) => `${r.target}/${r.seed}`), ['a/0', 'a/1']);
});

const EXPERIMENT: Experiment = {
  sourceSha256: 'ab', dataHash: 'cd', steps: 100, batch: 32, trainSize: 500, subsetSeed: 0, emaDecay: 0.99,
  bank: { steps: 25, cfg: 1.5, seed: 0 }, eval: { samples: 500, steps: 25, cfg: 1.5, extractorSha256: 'ef' },
};

function record(spec: RunSpec, fid: number, key = runKey(spec, EXPERIMENT)): RunRecord {
  return {
    kind: 'run', key, id: runId(spec), ...spec, metric: 'fid_iconnet', fid, kid: fid / 1000, kidStd: 0, samples: 500, refImages: 100,
    trainImages: 500, bankItems: spec.bankSize, trainSeconds: 1, evalSeconds: 1, stepSeconds: 0.01, device: 'cpu', finished: '', warnings: [],
  };
}

test('runKey changes with every setting the number depends on', () => {
  const spec = methodRun('a', 'full', { tau: 1, bankSize: 0, seed: 0 });
  const k = runKey(spec, EXPERIMENT);
  assert.equal(runKey({ ...spec }, { ...EXPERIMENT }), k);
  assert.notEqual(runKey({ ...spec, seed: 1 }, EXPERIMENT), k);
  assert.notEqual(runKey(spec, { ...EXPERIMENT, steps: 101 }), k);
  assert.notEqual(runKey(spec, { ...EXPERIMENT, eval: { ...EXPERIMENT.eval, extractorSha256: 'ff' } }), k);
  assert.notEqual(runKey(spec, { ...EXPERIMENT, dataHash: 'ce' }), k);
});

test('the results log: append, read back, a truncated last line is dropped, the last record of a key wins', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-transfer-'));
  try {
    const file = path.join(dir, 'runs.jsonl');
    assert.deepEqual(readRunRecords(file), []);
    const spec = methodRun('a', 'full', { tau: 1, bankSize: 0, seed: 0 });
    appendRunRecord(file, record(spec, 10));
    appendRunRecord(file, record(spec, 11));
    fs.appendFileSync(file, '{"kind":"run","key":"x","fid":');
    const back = readRunRecords(file);
    assert.equal(back.length, 2);
    assert.equal(recordsByKey(back).get(runKey(spec, EXPERIMENT))!.fid, 11);
    fs.writeFileSync(file, JSON.stringify({ ...record(spec, 1), fid: 'high' }) + '\n');
    assert.throws(() => readRunRecords(file), /'fid' must be a number/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function tableRecords(fids: Record<string, Record<string, number[]>>): Map<string, RunRecord> {
  const byId = new Map<string, RunRecord>();
  for (const [target, methods] of Object.entries(fids)) {
    for (const [method, values] of Object.entries(methods)) {
      values.forEach((fid, seed) => {
        const spec = methodRun(target, method as never, { tau: 1, bankSize: 32, seed });
        byId.set(runId(spec), record(spec, fid));
      });
    }
  }
  return byId;
}

test('aggregate: the transfer.json shape, averages and relative promotion', () => {
  const byId = tableRecords({
    a: { full: [10, 12], 'diff-tuning': [8, 8], difffit: [11, 11], 'difffit+diff-tuning': [9, 10], 'retention-only': [9, 11], 'reconsolidation-only': [9, 9] },
    b: { full: [20, 20], 'diff-tuning': [14, 16], difffit: [21, 19], 'difffit+diff-tuning': [16] },
  });
  const j = aggregate(byId, { targets: ['a', 'b'], steps: 100, seeds: 2, sweepSeeds: 1, bankSize: 32, ablationTarget: 'a' });
  assert.deepEqual(Object.keys(j).slice(0, 4), ['average', 'targets', 'steps', 'seeds']);
  assert.equal(j.steps, 100);
  assert.equal(j.seeds, 2);
  assert.deepEqual(Object.keys(j.targets), ['a', 'b']);
  assert.deepEqual(Object.keys(j.targets.a), ['full', 'diff-tuning', 'difffit', 'difffit+diff-tuning', 'retention-only', 'reconsolidation-only']);
  for (const cell of [j.targets.a.full, j.targets.b['diff-tuning']]) assert.deepEqual(Object.keys(cell).sort(), ['mean', 'std']);
  assert.deepEqual(j.targets.a.full, { mean: 11, std: Math.SQRT2 });
  assert.deepEqual(j.targets.b['difffit+diff-tuning'], { mean: 16, std: 0 });
  // Averages of the per-target means: full (11 + 20)/2, diff-tuning (8 + 15)/2; ablations are not averaged.
  assert.deepEqual(j.average, { full: 15.5, 'diff-tuning': 11.5, difffit: 15.5, 'difffit+diff-tuning': 12.75 });
  const p = j.relative_promotion['diff-tuning'];
  close(p.targets.a, 3 / 11, 1e-12);
  close(p.targets.b, 0.25, 1e-12);
  close(p.mean_over_targets!, (3 / 11 + 0.25) / 2, 1e-12);
  close(p.of_average!, 4 / 15.5, 1e-12);
  close(j.relative_promotion['reconsolidation-only'].targets.a, 2 / 11, 1e-12);
  assert.equal(j.relative_promotion['reconsolidation-only'].mean_over_targets, null);
  assert.deepEqual(j.missing, [runId(methodRun('b', 'difffit+diff-tuning', { tau: 1, bankSize: 32, seed: 1 }))]);
  assert.equal(j.complete, false);
  // Diff-Tuning on top of DiffFit, paired by seed: a −2, −1; b −5 (seed 1 of b has no difffit+diff-tuning run).
  assert.deepEqual([j.paired_difffit!.all.n, j.paired_difffit!.all.lower], [3, 3]);
  close(j.paired_difffit!.all.mean, -8 / 3, 1e-12);
  // A method missing on a target has no average.
  const partial = aggregate(tableRecords({ a: { full: [10], difffit: [9] }, b: { full: [20] } }),
    { targets: ['a', 'b'], steps: 1, seeds: 1, sweepSeeds: 1, bankSize: 32, ablationTarget: null });
  assert.deepEqual(partial.average, { full: 15 });
});

test('aggregate: curves are means over seeds per step, best points, final variants, steps to full fine-tuning\'s best', () => {
  const byId = tableRecords({ a: { full: [10, 12], 'diff-tuning': [9, 9] }, b: { full: [20, 22], 'diff-tuning': [19, 25] } });
  const withCurve = (target: string, method: string, seed: number, curve: [number, number][], extra: Partial<RunRecord> = {}): void => {
    const id = runId(methodRun(target, method as never, { tau: 1, bankSize: 32, seed }));
    byId.set(id, { ...byId.get(id)!, curve, ...extra });
  };
  withCurve('a', 'full', 0, [[100, 30], [200, 12], [300, 14]], { fidCfg1: 20, fidRaw: 16 });
  withCurve('a', 'full', 1, [[100, 34], [200, 14], [300, 16]], { fidCfg1: 22, fidRaw: 18 });
  withCurve('a', 'diff-tuning', 0, [[100, 20], [200, 13], [300, 10]]);
  withCurve('a', 'diff-tuning', 1, [[100, 20], [200, 12], [300, 10]]);
  withCurve('b', 'full', 0, [[100, 25], [200, 21], [300, 22]]);
  withCurve('b', 'full', 1, [[100, 25], [200, 21], [300, 22]]);
  withCurve('b', 'diff-tuning', 0, [[100, 30], [200, 26], [300, 24]]);
  const j = aggregate(byId, { targets: ['a', 'b'], steps: 300, seeds: 2, sweepSeeds: 1, bankSize: 32, ablationTarget: null });
  assert.deepEqual(j.targets.a.full.curve, [[100, 32], [200, 13], [300, 15]]);
  assert.deepEqual(j.targets.a.full.best, { step: 200, fid: 13 });
  assert.deepEqual(j.targets.a.full.cfg1, { mean: 21, std: Math.SQRT2 });
  assert.deepEqual(j.targets.a.full.raw, { mean: 17, std: Math.SQRT2 });
  assert.equal(j.targets.a['diff-tuning'].raw, undefined);
  // diff-tuning reaches full's best (13) on a at step 200 (mean 12.5), never on b (best 21 vs 24 at the end).
  assert.deepEqual(j.steps_to_full_best_by_target, { 'diff-tuning': { a: 200, b: null } });
  assert.deepEqual(j.steps_to_full_best, { 'diff-tuning': null });
  withCurve('b', 'diff-tuning', 0, [[100, 30], [200, 26], [300, 20]]);
  const k = aggregate(byId, { targets: ['a', 'b'], steps: 300, seeds: 2, sweepSeeds: 1, bankSize: 32, ablationTarget: null });
  assert.deepEqual(k.steps_to_full_best, { 'diff-tuning': 250 });
  // Records without curves give cells without curve fields.
  const plain = aggregate(tableRecords({ a: { full: [10] } }), { targets: ['a'], steps: 1, seeds: 1, sweepSeeds: 1, bankSize: 32, ablationTarget: null });
  assert.deepEqual(Object.keys(plain.targets.a.full).sort(), ['mean', 'std']);
  assert.equal(plain.steps_to_full_best, undefined);
});

test('ensureTargetSplit: the training subset and every other image, grey on request, reused by its manifest', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-target-split-'));
  try {
    const data = path.join(root, 'data');
    for (const [cls, n] of [['a', 6], ['b', 4]] as const) {
      fs.mkdirSync(path.join(data, cls), { recursive: true });
      for (let i = 0; i < n; i++) {
        const rgb = Buffer.alloc(4 * 4 * 3, 0);
        rgb[0] = 200; rgb[1] = 10 * i; rgb[2] = 40;
        fs.writeFileSync(path.join(data, cls, `${i}.png`), encodePng(rgb, 4, 4, 3));
      }
    }
    const work = path.join(root, 'work');
    const split = await ensureTargetSplit({ dataDir: data, target: 't', work, trainSize: 5, subsetSeed: 0, grey: true });
    assert.deepEqual([split.train, split.heldout], [5, 5]);
    const list = (dir: string): string[] => ['a', 'b'].flatMap((c) => fs.readdirSync(path.join(dir, c)).map((f) => `${c}/${f}`));
    const train = list(split.trainDir);
    const heldout = list(split.heldoutDir);
    assert.equal(train.length, 5);
    assert.deepEqual([...train, ...heldout].sort(), list(data).sort(), 'every image is in exactly one of the two');
    assert.deepEqual(train.map((f) => f.split('/')[0]).sort(), ['a', 'a', 'a', 'b', 'b'], 'stratified by class');
    assert.equal((await sharp(path.join(split.trainDir, train[0])).metadata()).channels, 1, 'grey');
    // Reused as it is (a file removed from it is not re-made), and refused when the target changed.
    fs.rmSync(path.join(split.heldoutDir, heldout[0]));
    assert.deepEqual(await ensureTargetSplit({ dataDir: data, target: 't', work, trainSize: 5, subsetSeed: 0, grey: true }), split);
    fs.copyFileSync(path.join(data, 'a', '0.png'), path.join(data, 'a', '9.png'));
    await assert.rejects(ensureTargetSplit({ dataDir: data, target: 't', work, trainSize: 5, subsetSeed: 0, grey: true }), /split of 10 images, but .* now has 11/);
    await assert.rejects(ensureTargetSplit({ dataDir: data, target: 't', work, trainSize: 1, subsetSeed: 0, grey: false }), /leaves classes .* without an image/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('curveOfLog: the in-loop FIDs of a run log by step; a step logged again (resume) keeps its last value; a torn line is skipped', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-curve-')), 'log.jsonl');
  fs.writeFileSync(file, [
    { step: 10, loss: 1 }, { step: 10, fid_fashion: 50 }, { step: 20, fid_fashion: 40 }, { step: 20, fid_fashion: 41 }, { step: 20, fid_iconnet: 9 },
  ].map((r) => JSON.stringify(r)).join('\n') + '\n{"step":30,"fid_fas');
  assert.deepEqual(curveOfLog(file, 'fid_fashion'), [[10, 50], [20, 41]]);
  assert.deepEqual(curveOfLog(path.join(path.dirname(file), 'missing.jsonl'), 'fid_fashion'), []);
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
});

test('paired differences against full: per target, over all pairs, the sign test', () => {
  // Binomial(n, 1/2) tails computed by hand: 0 of 3 -> 2/8; 3 of 15 -> 2 * 576/32768; a tie at n/2 -> 1.
  assert.equal(signTestP(0, 3), 0.25);
  assert.equal(signTestP(3, 3), 0.25);
  close(signTestP(3, 15), (2 * 576) / 32768, 1e-15);
  assert.equal(signTestP(2, 4), 1);
  assert.equal(signTestP(0, 0), 1);
  assert.throws(() => signTestP(4, 3), /0 <= k <= n/);
  assert.equal(formatP(0.0352), '0.035');
  assert.equal(formatP(2 / 32768), '6.1e-5');
  // Seed noise shared by both methods (seed 1 is 10 worse for both) cancels in the pairs.
  const byId = tableRecords({
    a: { full: [10, 20, 12], 'diff-tuning': [9, 19, 13], 'retention-only': [11, 21, 13], 'reconsolidation-only': [9, 19, 11] },
    b: { full: [30, 40], 'diff-tuning': [28, 38] },
  });
  const j = aggregate(byId, { targets: ['a', 'b'], steps: 1, seeds: 3, sweepSeeds: 1, bankSize: 32, ablationTarget: 'a' });
  const dt = j.paired['diff-tuning'];
  const a = dt.targets.a;
  assert.deepEqual([a.n, a.lower], [3, 2]);
  close(a.mean, -1 / 3, 1e-12);
  close(a.std, Math.sqrt(4 / 3), 1e-12);
  assert.deepEqual(dt.targets.b, { mean: -2, std: 0, n: 2, lower: 2 });
  assert.equal(dt.all.n, 5);
  assert.equal(dt.all.lower, 4);
  close(dt.all.mean, (-1 - 1 + 1 - 2 - 2) / 5, 1e-12);
  close(dt.all.sign_test_p, 2 * (1 + 5) / 32, 1e-15);
  // Ablations pair only where they ran; a method never measured has no entry.
  assert.deepEqual(Object.keys(j.paired['retention-only'].targets), ['a']);
  assert.equal(j.paired['retention-only'].all.lower, 0);
  assert.equal(j.paired.difffit, undefined);
  assert.equal(j.paired_difffit, null);
  // The ablations also pair against diff-tuning: retention-only is 2, 2, 0 above it.
  const ret = j.paired_ablation['retention-only'];
  assert.deepEqual([ret.all.n, ret.all.lower], [3, 0]);
  close(ret.all.mean, 4 / 3, 1e-12);
  assert.deepEqual(Object.keys(j.paired_ablation), ['retention-only', 'reconsolidation-only']);
  const md = pairedTable(j, ['a', 'b']).split('\n');
  assert.ok(md.includes('| diff-tuning | -0.33 ± 1.15 (lower 2/3) | -2.00 ± 0.00 (lower 2/2) | -1.00 ± 1.22 (lower 4/5) | 0.375 |'), md.join('\n'));
});

test('EWC per run: validated in the log, aggregated per cell, rendered with the ratio to full', () => {
  const byId = tableRecords({ a: { full: [10, 11], 'diff-tuning': [9, 9] } });
  const ewc = (total: number) => ({ items: 8, draws: 1, total, changed: 100, meanOverChanged: total / 100 });
  byId.get(runId(methodRun('a', 'full', { tau: 1, bankSize: 32, seed: 0 })))!.ewc = ewc(4e-8);
  byId.get(runId(methodRun('a', 'full', { tau: 1, bankSize: 32, seed: 1 })))!.ewc = ewc(6e-8);
  byId.get(runId(methodRun('a', 'diff-tuning', { tau: 1, bankSize: 32, seed: 0 })))!.ewc = ewc(2e-8);
  const j = aggregate(byId, { targets: ['a'], steps: 1, seeds: 2, sweepSeeds: 1, bankSize: 32, ablationTarget: null });
  close(j.ewc!.a.full.mean, 5e-8, 1e-20);
  assert.equal(j.ewc!.a.full.runs, 2);
  assert.deepEqual([j.ewc!.a['diff-tuning'].mean, j.ewc!.a['diff-tuning'].runs], [2e-8, 1]);
  const md = renderMarkdown(j, ['a'], { command: 'c', metric: 'fid_iconnet', settingsLines: [], timingLines: [] });
  assert.match(md, /## Forgetting of the source model \(EWC\)/);
  assert.match(md, /\| diff-tuning \| 2\.00e-8 ± 0\.0 \(×0\.40\) \|/);
  assert.equal(aggregate(tableRecords({ a: { full: [10] } }), { targets: ['a'], steps: 1, seeds: 1, sweepSeeds: 1, bankSize: 32, ablationTarget: null }).ewc, undefined);
  // A malformed ewc entry in the log is refused, naming the record.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-transfer-'));
  try {
    const file = path.join(dir, 'runs.jsonl');
    fs.writeFileSync(file, JSON.stringify({ ...record(methodRun('a', 'full', { tau: 1, bankSize: 0, seed: 0 }), 1), ewc: { total: 'big' } }) + '\n');
    assert.throws(() => readRunRecords(file), /record 1 .*'ewc' must be/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(parseSettings(['--ewc-items', '0'], { cudaAvailable: false }).ewcItems, 0);
  assert.equal(parseSettings([], { cudaAvailable: false }).ewcItems, 256);
  assert.throws(() => parseSettings(['--ewc-items', '-1'], { cudaAvailable: false }), /--ewc-items must be an integer >= 0/);
});

test('aggregate: the sweeps collect their points', () => {
  const byId = new Map<string, RunRecord>();
  [[0, 30], [1, 20], [2, 25]].forEach(([tau, fid]) => {
    const spec = methodRun('a', 'diff-tuning', { tau, bankSize: 32, seed: 0 });
    byId.set(runId(spec), record(spec, fid));
  });
  const bank0 = bankSweepRun('a', 0, 0);
  byId.set(runId(bank0), record(bank0, 40));
  const j = aggregate(byId, {
    targets: ['a'], steps: 1, seeds: 1, sweepSeeds: 1, bankSize: 32, ablationTarget: null,
    tau: { target: 'a', values: [0, 1, 2] }, bank: { target: 'a', sizes: [0, 32, 64] },
  });
  assert.deepEqual(j.tau_sweep!.points.map((p) => [p.tau, p.mean, p.runs]), [[0, 30, 1], [1, 20, 1], [2, 25, 1]]);
  assert.deepEqual(j.bank_sweep!.points.map((p) => [p.bank_size, p.mean]), [[0, 40], [32, 20]]);
  assert.ok(j.missing.includes(runId(bankSweepRun('a', 64, 0))));
});

test('Markdown: mean ± std, percentages, the main table', () => {
  assert.equal(formatMeanStd({ mean: 12.3456, std: 0.5 }), '12.35 ± 0.50');
  assert.equal(formatMeanStd({ mean: 123.45, std: 2.26 }), '123.5 ± 2.3');
  assert.equal(formatMeanStd({ mean: 0.03646, std: 0.00012 }), '0.0365 ± 0.0001');
  assert.equal(formatMeanStd(undefined), '—');
  assert.equal(decimalsFor(0.5), 3);
  assert.equal(decimalsFor(42), 2);
  assert.equal(formatPercent(0.2534), '+25.3%');
  assert.equal(formatPercent(-0.1), '-10.0%');
  assert.equal(formatPercent(null), '—');
  const j = aggregate(tableRecords({ a: { full: [10, 12], 'diff-tuning': [8, 8] } }),
    { targets: ['a'], steps: 1, seeds: 2, sweepSeeds: 1, bankSize: 32, ablationTarget: null });
  const md = mainTable(j, ['a']).split('\n');
  assert.equal(md[0], '| method | a | average |');
  assert.ok(md.includes('| full | 11.00 ± 1.41 | 11.00 |'), md.join('\n'));
  assert.ok(md.includes('| diff-tuning | 8.00 ± 0.00 | 8.00 |'), md.join('\n'));
  assert.ok(md.includes('| difffit | — | — |'), md.join('\n'));
  assert.ok(md.includes('| relative promotion, diff-tuning | +27.3% | +27.3% |'), md.join('\n'));
});

test('parseSettings: presets, overrides and errors that name the flag', () => {
  const cpu = parseSettings([], { cudaAvailable: false });
  assert.equal(cpu.budget, 'cpu');
  assert.equal(cpu.device, 'cpu');
  assert.equal(cpu.steps, PRESETS.cpu.steps);
  assert.deepEqual(cpu.targets, ['twemoji', 'flags', 'oxygen', 'openclipart', 'crawl-textures']);
  assert.equal(cpu.sweepTarget, 'twemoji');
  const gpu = parseSettings([], { cudaAvailable: true });
  assert.equal(gpu.budget, 'gpu');
  assert.equal(gpu.device, 'cuda');
  const s = parseSettings(['--budget', 'quick', '--steps', '7', '--targets', 'flags,oxygen', '--only', 'tau,bank', '--tau-values', '0,1', '--sweep-target', 'oxygen'],
    { cudaAvailable: true });
  assert.equal(s.budget, 'quick');
  assert.equal(s.steps, 7);
  assert.equal(s.seeds, PRESETS.quick.seeds);
  assert.deepEqual(s.parts, ['tau', 'bank']);
  assert.deepEqual(s.tauValues, [0, 1]);
  assert.equal(s.ablationTarget, 'flags');
  assert.equal(s.sweepTarget, 'oxygen');
  assert.throws(() => parseSettings(['--steps', '0'], { cudaAvailable: false }), /--steps must be a positive integer/);
  assert.throws(() => parseSettings(['--only', 'tables'], { cudaAvailable: false }), /--only: 'tables' is not a part/);
  assert.throws(() => parseSettings(['--budget', 'huge'], { cudaAvailable: false }), /--budget must be quick, cpu, gpu/);
  assert.throws(() => parseSettings(['--targets', 'flags', '--sweep-target', 'oxygen'], { cudaAvailable: false }), /--sweep-target 'oxygen' is not one of --targets/);
  assert.throws(() => parseSettings(['--bank-sizes', '0,64,x'], { cudaAvailable: false }), /--bank-sizes: 'x' is not an integer/);
  assert.throws(() => parseSettings(['--seeds', '1', '--sweep-seeds', '2'], { cudaAvailable: false }), /--sweep-seeds/);
  assert.throws(() => parseSettings(['--frobnicate'], { cudaAvailable: false }), /unknown flag '--frobnicate'/);
  assert.throws(() => parseSettings(['--methods', 'full,ft'], { cudaAvailable: false }), /--methods: 'ft' is not a method \(expected full, diff-tuning/);
  assert.deepEqual(parseSettings(['--methods', 'full,full,difffit'], { cudaAvailable: false }).methods, ['full', 'difffit']);
  assert.deepEqual(parseSettings([], { cudaAvailable: false }).methods, [...METHOD_NAMES]);
  // The testbed: its source, targets, extractor and held-out protocol; the old budgets keep the old protocol.
  const tb = parseSettings(['--budget', 'testbed'], { cudaAvailable: false });
  assert.deepEqual([tb.source, tb.extractor, tb.heldout, tb.grey, tb.bankSampler, tb.bankSteps, tb.finalVariants], [TESTBED_SOURCE, 'fashion', true, true, 'ddpm', 250, true]);
  assert.deepEqual(tb.targets, TESTBED_TARGETS);
  assert.ok(tb.evalSamples >= 1000 && tb.curvePoints >= 4);
  assert.deepEqual([cpu.heldout, cpu.curvePoints, cpu.bankSampler], [false, 0, 'ddim']);
  assert.equal(parseSettings(['--budget', 'testbed', '--no-grey', '--bank-sampler', 'ddim'], { cudaAvailable: false }).grey, false);
  assert.throws(() => parseSettings(['--budget', 'testbed', '--steps', '1001'], { cudaAvailable: false }), /--curve-points \(5\) must divide --steps \(1001\)/);
  assert.throws(() => parseSettings(['--bank-sampler', 'euler'], { cudaAvailable: false }), /--bank-sampler/);
});
