// `npm run bench:transfer`: the small-scale reproduction of Diff-Tuning's Table 1. For each target
// it fine-tunes the source model on a stratified subsample of the target's train split with full
// fine-tuning, Diff-Tuning, DiffFit and DiffFit + Diff-Tuning (and the two ablations on one target)
// for a fixed step budget and several seeds, and measures FID/KID of the EMA model's samples
// against the target's held-out eval split; plus the tau and bank-size sweeps on one target and the
// forgetting curve. Each run is one child process (one-run.ts) and one line of OUT/runs.jsonl:
// finished runs are skipped, so the benchmark can be stopped and continued in another session.
// Writes OUT/transfer.json, OUT/transfer.md (and OUT/forgetting/), and prints the tables.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { configureThreads } from '../../src/cli/threads';
import { sha256File } from '../../src/data/hash';
import { loadExtractor } from '../../src/eval/extractor';
import { datasetFingerprint, DEFAULT_EVAL_FRACTION, DEFAULT_SPLIT_SEED, ReferenceSpec } from '../../src/eval/reference-stats';
import { readDiTConfig, siblingConfig } from '../../src/models/dit-io';
import * as torch from '../../src/torch';
import { noteBlas } from '../child';
import { Device } from '../../src/torch';
import { writeFileAtomic } from '../../src/tuning/write-atomic';
import { aggregate } from './aggregate';
import { ensureBank } from './bank-cache';
import { scaledEmaDecay } from '../../src/tuning/ema-budget';
import { ForgettingRequest, forgettingCurve, ForgettingSummary, savedForgettingCurve } from './forgetting-part';
import { readJsonFile, RunJob, RunOutcome } from './job';
import { renderMarkdown } from './markdown';
import { forgettingRun, largestBank, planRuns, RunSpec, runId } from './plan';
import { appendRunRecord, Experiment, readRunRecords, RunRecord, recordsByKey, runKey } from './results-log';
import { BenchSettings, parseSettings, PARTS, USAGE } from './settings';
import { ensureTargetSplit, TargetSplit } from './target-split';
import { writeCurvePlots } from './curves-plot';

const log = (m: string): void => console.log(m);

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** A target folder's content identity: dataset.json's contentHash when it has one, else a file fingerprint. */
function dataHash(dir: string): string {
  const manifest = path.join(dir, 'dataset.json');
  if (fs.existsSync(manifest)) {
    const h = readJsonFile<{ contentHash?: unknown }>(manifest, 'dataset manifest').contentHash;
    if (typeof h === 'string' && h) return h;
  }
  return datasetFingerprint(dir);
}

function checkInputs(s: BenchSettings): { sourceConfig: string } {
  if (!fs.existsSync(s.source)) {
    throw new Error(`--source ${s.source}: not found (the shipped source model is assets/source/iconnet-dit.safetensors; ` +
      'make one with `difftune pretrain`, or pass another DiT .safetensors with its .json beside it)');
  }
  const sourceConfig = s.sourceConfig ?? siblingConfig(s.source);
  if (!sourceConfig) throw new Error(`--source ${s.source}: no config JSON beside it; pass --source-config FILE`);
  for (const t of s.targets) {
    const dir = path.join(s.dataRoot, t);
    if (!fs.existsSync(dir)) throw new Error(`target '${t}': ${dir} does not exist (build it with \`difftune datasets build ${t}\`, or set --data-root)`);
    const partial = fs.readdirSync(s.dataRoot).find((n) => n.startsWith(`${t}.tmp-`));
    if (!fs.existsSync(path.join(dir, 'dataset.json')) && partial) throw new Error(`target '${t}': ${dir} is still being built (${partial})`);
  }
  return { sourceConfig };
}

/** Runs one job in a child process with its output shown; resolves to its outcome. */
function runChild(job: RunJob): Promise<RunOutcome> {
  fs.mkdirSync(job.runDir, { recursive: true });
  const jobFile = path.join(job.runDir, 'job.json');
  const resultFile = path.join(job.runDir, 'result.json');
  fs.rmSync(resultFile, { force: true });
  writeFileAtomic(jobFile, JSON.stringify(job, null, 2) + '\n');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'one-run.js'), jobFile, resultFile], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0 && fs.existsSync(resultFile)) resolve(readJsonFile<RunOutcome>(resultFile, 'run result'));
      else reject(new Error(`run ${job.id} failed (${signal ?? `exit code ${code}`}); its output is above. ` +
        'Finished runs are kept: run the same command again to continue.'));
    });
  });
}

/** A path relative to the working directory when it lies inside it, else as it is. */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
}

function formatSeconds(s: number): string {
  if (s < 120) return `${s.toFixed(0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** The source's sha256 with its own-domain FID and gate, from the card beside it (X.card.json) when there is one. */
function sourceSummary(source: string, sha256: string): Record<string, unknown> {
  const cardFile = source.replace(/\.safetensors$/i, '.card.json');
  if (!fs.existsSync(cardFile)) return { sha256, own_fid: null, gate: null };
  const card = readJsonFile<{ own_fid?: number; gate?: { accuracy: number; real_accuracy: number; passed: boolean } }>(cardFile, 'source card');
  return { sha256, own_fid: card.own_fid ?? null, gate: card.gate ?? null, card: cardFile };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  let s: BenchSettings;
  try {
    s = parseSettings(argv, { cudaAvailable: torch.cuda.isAvailable() });
  } catch (e) {
    console.error(`bench:transfer: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const command = ['npm', 'run', 'bench:transfer', '--', ...argv].map(shellQuote).join(' ');
  const { sourceConfig } = checkInputs(s);
  configureThreads();
  noteBlas('ts', { blas: torch.describeBlas() }); // one side only: this bench has no PyTorch peer
  const device = s.device as Device;
  const sourceSha256 = sha256File(s.source);
  const source = readDiTConfig(sourceConfig);
  const extractor = loadExtractor(s.extractor);
  const extractorInfo = { name: extractor.name, weights: extractor.weightsFile, sha256: extractor.weightsHash, dim: extractor.dim };
  extractor.dispose();
  const emaDecay = scaledEmaDecay(s.steps);
  const dataDir = (t: string): string => path.join(s.dataRoot, t);
  const hashes = new Map(s.targets.map((t) => [t, dataHash(dataDir(t))]));
  // The held-out protocol: per target a training-subset folder and a folder of everything else.
  const splits = new Map<string, TargetSplit>();
  if (s.heldout && !s.reportOnly) {
    for (const t of s.targets) {
      const split = await ensureTargetSplit({ dataDir: dataDir(t), target: t, work: s.work, trainSize: s.trainSize, subsetSeed: s.subsetSeed, grey: s.grey });
      splits.set(t, split);
      log(`target ${t}: ${split.train} training images in ${displayPath(split.trainDir)}, ${split.heldout} held out in ${displayPath(split.heldoutDir)}`);
    }
  }
  const trainDirOf = (t: string): string => splits.get(t)?.trainDir ?? dataDir(t);
  const refOf = (t: string): ReferenceSpec => {
    const split = splits.get(t);
    return split
      ? { dir: split.heldoutDir, split: 'all', splitSeed: DEFAULT_SPLIT_SEED, evalFraction: DEFAULT_EVAL_FRACTION }
      : { dir: dataDir(t), split: 'eval', splitSeed: DEFAULT_SPLIT_SEED, evalFraction: DEFAULT_EVAL_FRACTION };
  };
  const experiment = (target: string): Experiment => ({
    sourceSha256, dataHash: hashes.get(target)!, steps: s.steps, batch: s.batch, trainSize: s.trainSize, subsetSeed: s.subsetSeed, emaDecay,
    bank: { steps: s.bankSteps, cfg: s.cfg, seed: 0, ...(s.bankSampler !== 'ddim' ? { sampler: s.bankSampler } : {}) },
    eval: { samples: s.evalSamples, steps: s.evalSteps, cfg: s.cfg, extractorSha256: extractorInfo.sha256 },
    // Only in the testbed's keys, so the records of the old protocol keep theirs.
    ...(s.heldout ? { protocol: { heldout: true, grey: s.grey, curvePoints: s.curvePoints, curveSamples: s.curveSamples, finalVariants: s.finalVariants } } : {}),
  });
  const keyOf = (r: RunSpec): string => runKey(r, experiment(r.target));

  // What this invocation runs, and (for the outputs) everything this experiment has measured.
  const planned = planRuns(s);
  const everything = planRuns({ ...s, parts: [...PARTS] });
  const logFile = path.join(s.out, 'runs.jsonl');
  const done = recordsByKey(readRunRecords(logFile));
  const runDirOf = (r: RunSpec, key: string): string =>
    path.join(s.work, 'runs', r.target, r.method, `tau${r.tau ?? '-'}-bank${r.bankSize}-seed${r.seed}-${key.slice(0, 8)}`);

  // The forgetting curve probes the full fine-tuning run's model: kept on disk for it, and trained
  // again when the curve is still to be made but the model is gone (e.g. a new --sweep-target).
  const fr = forgettingRun(s);
  const frKey = keyOf(fr);
  const frModel = path.join(runDirOf(fr, frKey), 'model.safetensors');
  const frRequest: ForgettingRequest = {
    runId: runId(fr), runKey: frKey, source: s.source, sourceConfig, outDir: path.join(s.out, 'forgetting'), finetuned: frModel,
    ref: refOf(fr.target),
    samples: s.forgettingSamples, splits: s.forgettingSplits, steps: s.evalSteps, cfg: s.cfg, batch: s.evalBatch, seed: 0,
    device, extractor: s.extractor, log,
  };
  let forgetting: ForgettingSummary | null = savedForgettingCurve(frRequest);
  const retrainForgetting = s.parts.includes('forgetting') && !forgetting && !fs.existsSync(frModel);
  const pending = s.reportOnly ? [] : planned.filter((r) => !done.has(keyOf(r)) || (retrainForgetting && r.id === frRequest.runId));
  const fineTunes = pending.filter((r) => r.method !== 'pretrained');
  log(`bench:transfer (${s.budget} budget, ${device}): ${planned.length} runs planned for ${s.parts.join(', ')}; ` +
    `${planned.length - pending.length} already in ${logFile}, ${pending.length} to run ` +
    `(${fineTunes.length} fine-tunes of ${s.steps} steps at batch ${s.batch}: ${fineTunes.length * s.steps} steps; ` +
    `${pending.length * s.evalSamples} evaluation samples of ${s.evalSteps} DDIM steps)`);
  log(`source ${s.source} (DiT hidden ${source.hiddenSize}, depth ${source.depth}, patch ${source.patchSize}, ${source.numClasses} classes; ` +
    `sha256 ${sourceSha256.slice(0, 12)}); EMA decay ${emaDecay.toPrecision(6)} = 0.9999^(24000/${s.steps})`);
  if (s.dryRun) {
    for (const r of pending) log(`  ${r.id}  [${r.parts.join(', ')}]`);
    return;
  }

  // EWC needs the bank too (its Fisher's inputs), also when no pending run replays it.
  const ewcWanted = s.ewcItems > 0 && fineTunes.length > 0;
  const bankNeeded = Math.max(largestBank(pending), ewcWanted ? s.ewcItems : 0);
  const bankDir = bankNeeded > 0
    ? await ensureBank({ source: s.source, sourceConfig, sourceSha256, work: s.work, n: bankNeeded, sampler: s.bankSampler, steps: s.bankSteps, cfg: s.cfg, device, log })
    : null;

  const started = Date.now();
  const seconds: number[] = [];
  for (const [i, r] of pending.entries()) {
    const key = keyOf(r);
    const job: RunJob = {
      spec: { target: r.target, method: r.method, tau: r.tau, bankSize: r.bankSize, seed: r.seed }, id: r.id, key,
      runDir: runDirOf(r, key), source: s.source, sourceConfig, dataDir: trainDirOf(r.target), bankDir: r.bankSize > 0 ? bankDir : null,
      heldoutDir: splits.get(r.target)?.heldoutDir ?? null, curvePoints: s.curvePoints, curveSamples: s.curveSamples, finalVariants: s.finalVariants,
      steps: s.steps, batch: s.batch, trainSize: s.trainSize, subsetSeed: s.subsetSeed, emaDecay, device: s.device,
      evalSamples: s.evalSamples, evalSteps: s.evalSteps, evalBatch: s.evalBatch, cfg: s.cfg, extractor: s.extractor,
      ewc: ewcWanted && bankDir ? { bankDir, items: s.ewcItems, draws: 1, seed: 0 } : null,
    };
    log(`[${i + 1}/${pending.length}] ${r.id}`);
    const t0 = Date.now();
    const o = await runChild(job);
    const record: RunRecord = {
      kind: 'run', key, id: r.id, ...job.spec, metric: o.metric, fid: o.fid, kid: o.kid, kidStd: o.kidStd, samples: o.samples,
      refImages: o.refImages, trainImages: o.trainImages, bankItems: o.bankItems, trainSeconds: o.trainSeconds, evalSeconds: o.evalSeconds,
      stepSeconds: o.stepSeconds, ...(o.ewc ? { ewc: o.ewc } : {}),
      ...(o.curve ? { curve: o.curve } : {}), ...(o.cfg1 ? { fidCfg1: o.cfg1.fid } : {}), ...(o.raw ? { fidRaw: o.raw.fid } : {}), device: s.device, command, finished: new Date().toISOString(), warnings: o.warnings,
    };
    appendRunRecord(logFile, record);
    done.set(key, record);
    fs.rmSync(path.join(job.runDir, 'checkpoints'), { recursive: true, force: true });
    if (!s.keepModels && r.id !== frRequest.runId) {
      for (const f of ['model.safetensors', 'peft.safetensors']) fs.rmSync(path.join(job.runDir, f), { force: true });
    }
    if (r.method !== 'pretrained') seconds.push((Date.now() - t0) / 1000);
    const left = pending.slice(i + 1).filter((p) => p.method !== 'pretrained').length;
    const mean = seconds.length ? seconds.reduce((a, b) => a + b, 0) / seconds.length : 0;
    log(`[${i + 1}/${pending.length}] ${r.id}: ${o.metric} ${o.fid.toFixed(3)}, KID ${o.kid.toFixed(5)} ` +
      `(train ${o.trainSeconds.toFixed(1)} s = ${o.stepSeconds.toFixed(3)} s/step, eval ${o.evalSeconds.toFixed(1)} s)` +
      `${left && mean ? `; about ${formatSeconds(left * mean)} left` : ''}`);
  }

  if (s.parts.includes('forgetting') && !forgetting && !s.reportOnly) {
    log(`forgetting curve: ${frRequest.runId}, ${s.forgettingSamples} samples at ${s.forgettingSplits.length} switch points`);
    forgetting = await forgettingCurve(frRequest);
  }

  // Outputs from every record of this experiment (also those of earlier sessions and other parts).
  const byId = new Map<string, RunRecord>();
  for (const r of everything) {
    const rec = done.get(keyOf(r));
    if (rec) byId.set(r.id, rec);
  }
  // A part not run now is still reported when it has results of its own (not just runs it shares with the table).
  const hasOwn = (part: 'table' | 'tau' | 'bank'): boolean =>
    everything.some((r) => r.parts.includes(part) && (part === 'table' || !r.parts.includes('table')) && byId.has(r.id));
  const use = (part: 'table' | 'tau' | 'bank'): boolean => s.parts.includes(part) || hasOwn(part);
  const agg = aggregate(byId, {
    targets: s.targets, steps: s.steps, seeds: s.seeds, sweepSeeds: s.sweepSeeds, bankSize: s.bankSize,
    ablationTarget: use('table') ? s.ablationTarget : null,
    tau: use('tau') ? { target: s.sweepTarget, values: s.tauValues } : undefined,
    bank: use('bank') ? { target: s.sweepTarget, sizes: s.bankSizes } : undefined,
  });
  const selected = new Set(planned.map((r) => r.id));
  agg.missing = agg.missing.filter((id) => selected.has(id));
  agg.complete = agg.missing.length === 0 && (!s.parts.includes('forgetting') || forgetting !== null);

  const records = everything.map((r) => byId.get(r.id)).filter((r): r is RunRecord => !!r);
  const runCommands = [...new Set(records.map((r) => r.command).filter((c): c is string => !!c))];
  const tuned = records.filter((r) => r.method !== 'pretrained');
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const timing = {
    runs: records.length,
    mean_step_seconds: mean(tuned.map((r) => r.stepSeconds)),
    mean_train_seconds: mean(tuned.map((r) => r.trainSeconds)),
    mean_eval_seconds: mean(records.map((r) => r.evalSeconds)),
    this_session_seconds: (Date.now() - started) / 1000,
    devices: [...new Set(records.map((r) => r.device))],
  };
  const refImages = Object.fromEntries(s.targets.map((t) => [t, records.find((r) => r.target === t)?.refImages ?? null]));
  const trainImages = Object.fromEntries(s.targets.map((t) => [t, tuned.find((r) => r.target === t)?.trainImages ?? null]));
  const settings = {
    budget: s.budget, device: s.device, source: { file: s.source, sha256: sourceSha256, config: sourceConfig },
    targets: Object.fromEntries(s.targets.map((t) => [t, { dir: dataDir(t), data_hash: hashes.get(t), train_images: trainImages[t], eval_images: refImages[t] }])),
    steps: s.steps, batch: s.batch, train_size: s.trainSize, subset_seed: s.subsetSeed,
    lr: { default: 1e-4, difffit: 1e-3 }, ema_decay: emaDecay, ema_rule: '0.9999^(24000/steps): the reference\'s 9.07% residual of the pretrained weights',
    tau: 1, replay_ratio: 0.2, retention_weight: 0.1, labels: 'reuse',
    bank: { size: s.bankSize, sampler: `${s.bankSampler}${s.bankSteps}`, cfg: s.cfg, labels: 'uniform over source classes', seed: 0 },
    eval: {
      samples: s.evalSamples, sampler: `ddim${s.evalSteps}`, cfg: s.cfg,
      reference: s.heldout ? 'every target image not in the training subset' : `eval split (fraction ${DEFAULT_EVAL_FRACTION}, seed ${DEFAULT_SPLIT_SEED})`,
      ...(s.curvePoints > 0 ? { curve: { points: s.curvePoints, samples: s.curveSamples, weights: 'EMA' } } : {}),
      ...(s.finalVariants ? { final_variants: ['EMA at guidance 1', `raw weights at guidance ${s.cfg}`] } : {}),
    },
    grey_targets: s.grey,
    ablation_target: s.ablationTarget, sweep_target: s.sweepTarget, sweep_seeds: s.sweepSeeds,
  };
  const json = {
    ...agg,
    eval_samples: s.evalSamples,
    source: sourceSummary(s.source, sourceSha256),
    forgetting: forgetting ? { target: fr.target, method: 'full', seed: 0, ...forgetting } : null,
    extractor: extractorInfo,
    settings,
    timing,
    command,
    run_commands: runCommands,
    generated: new Date().toISOString(),
  };
  const markdown = renderMarkdown(agg, s.targets, {
    command,
    runCommands,
    metric: tuned[0]?.metric ?? `fid_${extractorInfo.name}`,
    forgetting: forgetting ? { target: fr.target, ...forgetting } : null,
    settingsLines: [
      `budget \`${s.budget}\` on ${s.device}; source \`${s.source}\` (DiT hidden ${source.hiddenSize}, depth ${source.depth}, patch ${source.patchSize}, ` +
        `${source.inputSize}x${source.inputSize}x${source.inChannels}, ${source.numClasses} classes; sha256 ${sourceSha256.slice(0, 12)})`,
      `training sets: ${s.trainSize} images per target, stratified by class from the train split (subset seed ${s.subsetSeed}); ` +
        `the same images for every method and seed (actual: ${s.targets.map((t) => `${t} ${trainImages[t] ?? '?'}`).join(', ')})`,
      s.heldout
        ? `FID/KID reference: every target image not in the training subset (${s.targets.map((t) => `${t} ${refImages[t] ?? '?'}`).join(', ')} images)` +
          `${s.grey ? '; targets converted to grey' : ''}`
        : `FID/KID reference: each target's eval split (${DEFAULT_EVAL_FRACTION * 100}% of the images, split seed ${DEFAULT_SPLIT_SEED}; ` +
          `${s.targets.map((t) => `${t} ${refImages[t] ?? '?'}`).join(', ')} images), never trained on`,
      `${s.steps} steps at batch ${s.batch} for every method; AdamW lr 1e-4 (DiffFit 1e-3), no weight decay; ` +
        `EMA decay ${emaDecay.toPrecision(6)} = 0.9999^(24000/${s.steps}), so the evaluated EMA keeps the reference's 9.07% of the pretrained weights`,
      `Diff-Tuning: τ = 1, replay floor(0.2·batch) bank items per batch with the null label, L = L_target + 0.1·L_replay; label rows reused`,
      `knowledge bank: ${s.bankSize} samples of the source model (uniform source labels, ${s.bankSampler.toUpperCase()} ${s.bankSteps} steps, guidance ${s.cfg})`,
      `evaluation: the EMA weights, ${s.evalSamples} samples (DDIM ${s.evalSteps} steps, guidance ${s.cfg}, labels in the eval split's class proportions, ` +
        `starting noise from the run seed, so methods are compared on the same noise), extractor ${extractorInfo.name} ` +
        `(${displayPath(extractorInfo.weights)}, sha256 ${extractorInfo.sha256.slice(0, 12)})`,
      `seeds ${s.seeds} (0..${s.seeds - 1}); sweeps on ${s.sweepTarget} with ${s.sweepSeeds} seed(s); ablation on ${s.ablationTarget}`,
    ],
    timingLines: tuned.length ? [
      `${tuned.length} fine-tuning runs: ${timing.mean_step_seconds.toFixed(3)} s per step, ${timing.mean_train_seconds.toFixed(1)} s training and ` +
        `${timing.mean_eval_seconds.toFixed(1)} s evaluation per run on average (${timing.devices.join(', ')})`,
    ] : [],
  });
  fs.mkdirSync(s.out, { recursive: true });
  writeFileAtomic(path.join(s.out, 'transfer.json'), JSON.stringify(json, null, 2) + '\n');
  writeFileAtomic(path.join(s.out, 'transfer.md'), markdown);
  const curvePlots = await writeCurvePlots(s.out, agg, tuned[0]?.metric ?? `fid_${extractorInfo.name}`, s.seeds);
  if (curvePlots.length) log(`wrote ${curvePlots.join(', ')}`);
  console.log(`\n${markdown}`);
  log(`wrote ${path.join(s.out, 'transfer.json')} and ${path.join(s.out, 'transfer.md')}`);
}

main().catch((e) => {
  console.error(`bench:transfer: ${(e as Error).message}`);
  process.exit(1);
});
