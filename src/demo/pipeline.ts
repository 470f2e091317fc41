// `difftune demo`, end to end: target data -> source model -> knowledge bank -> full and Diff-Tuning
// fine-tunes with the same budget and seed -> FID/KID of pretrained, full and Diff-Tuning samples ->
// chain-of-forgetting curve -> EWC against the source -> OUT/report/index.html. Each step prints what it does and its time.
import * as fs from 'fs';
import * as path from 'path';
import { sha256File } from '../data/hash';
import { defaultOut } from '../data/datasets/registry';
import { loadExtractor } from '../eval/extractor';
import { proportionalLabels } from '../eval/forgetting';
import { DiT } from '../models/dit';
import { loadDiT, readDiTConfig, siblingConfig } from '../models/dit-io';
import { writeFileAtomic } from '../tuning/write-atomic';
import { demoBank } from './bank-step';
import { demoEvaluation, EvaluatedModel, gridIndices } from './evaluation-step';
import { demoEwc } from './ewc-step';
import { lossCurveSvg, timestepLawsSvg } from './figures';
import { demoFinetune, demoTrainConfig, DemoMethod, FinetuneRun } from './finetune-step';
import { demoForgetting } from './forgetting-step';
import { DemoExtractor, Reference, referenceFromFiles, relativePromotion, SampleMetrics } from './metrics';
import { renderReportHtml, ReportData } from './report-html';
import { checkSettings, DemoSettings } from './settings';
import { formatSeconds, StepTimer } from './step-timer';
import { classCounts, ensureDataset, splitTarget, writeSubsetFolder } from './target-data';

export type { DemoExtractor } from './metrics';

export interface DemoDeps {
  log?: (m: string) => void;
  /** Use this extractor instead of loading settings.extractor (the caller frees it). */
  extractor?: DemoExtractor;
}

export interface DemoResult {
  reportFile: string;
  resultsFile: string;
  metrics: Record<'pretrained' | DemoMethod, SampleMetrics>;
  promotion: number;
  seconds: number;
}

export const MODEL_NAMES: Record<'pretrained' | DemoMethod, string> = { pretrained: 'pretrained', full: 'full fine-tuning', 'diff-tuning': 'Diff-Tuning' };

/** Checks the source model before anything long runs; returns its config file. */
function checkSource(s: DemoSettings): string {
  if (!fs.existsSync(s.source)) {
    throw new Error(`source model ${s.source} not found. The demo fine-tunes a pretrained DiT: pass --source FILE.safetensors ` +
      '(with its .json beside it), or train one with `difftune pretrain --data data/iconnet ...`');
  }
  const configFile = siblingConfig(s.source);
  if (!configFile) throw new Error(`${s.source}: no ${path.basename(s.source).replace(/\.[^.]+$/, '.json')} beside it (the model config)`);
  const c = readDiTConfig(configFile);
  if (c.inChannels !== 3) throw new Error(`${s.source}: the demo needs an RGB pixel-space DiT (in_channels 3), this one has ${c.inChannels}`);
  if (!(c.classDropoutProb > 0)) throw new Error(`${s.source}: the model has no null label (class_dropout_prob 0); the bank, guidance and replay need one`);
  return configFile;
}

export async function runDemoPipeline(s: DemoSettings, deps: DemoDeps = {}): Promise<DemoResult> {
  const log = deps.log ?? ((m: string) => console.log(m));
  checkSettings(s);
  const out = path.resolve(s.out);
  const reportDir = path.join(out, 'report');
  const dataDir = path.resolve(s.dataDir || defaultOut(s.dataset));
  const timer = new StepTimer(8, log);
  const warnings: string[] = [];
  const sourceConfigFile = checkSource(s);
  const extractor: DemoExtractor = deps.extractor ?? loadExtractor(s.extractor);
  fs.mkdirSync(reportDir, { recursive: true });
  const models: DiT[] = [];
  let reference: Reference | null = null;
  try {
    // 1. Data.
    const target = await timer.run(`Target data: ${s.trainImages} training images of '${s.dataset}', the rest held out`, async () => {
      const built = await ensureDataset(s.dataset, dataDir, (m) => log(`    ${m}`));
      if (!built) log(`    using ${dataDir}`);
      const split = splitTarget(dataDir, { trainImages: s.trainImages, seed: s.seed });
      const trainDir = path.join(out, 'data', 'train');
      const heldOutDir = path.join(out, 'data', 'heldout');
      writeSubsetFolder(split, split.train, trainDir);
      writeSubsetFolder(split, split.heldOut, heldOutDir);
      log(`    ${split.classes.length} classes; ${split.train.length} training images -> ${trainDir}; ${split.heldOut.length} held out -> ${heldOutDir}`);
      return { split, trainDir, heldOutDir };
    });
    const { split } = target;

    // 2. Source model.
    const source = await timer.run(`Source model: ${s.source}`, () => {
      const { model } = loadDiT(s.source, { configFile: sourceConfigFile });
      models.push(model);
      const c = model.config;
      if (split.classes.length > c.numClasses) {
        throw new Error(`${s.source}: the target has ${split.classes.length} classes but the model only ${c.numClasses} label rows (labels.mode 'reuse')`);
      }
      const sha256 = sha256File(s.source);
      log(`    DiT ${c.hiddenSize} wide, ${c.depth} blocks, ${c.numHeads} heads, patch ${c.patchSize}, ${c.inputSize}x${c.inputSize}x${c.inChannels}, ` +
        `${c.numClasses} classes; ${(model.numParameters() / 1e6).toFixed(2)}M parameters; sha256 ${sha256.slice(0, 16)}…`);
      return { model, sha256, config: c };
    });

    // 3. Knowledge bank.
    const bankDir = path.join(out, 'bank');
    const bank = await timer.run(`Knowledge bank: ${s.bank.n} samples of the source model (DDIM ${s.bank.steps}, cfg ${s.bank.cfg})`, () => demoBank({
      modelFile: s.source, modelSha256: source.sha256, numClasses: source.config.numClasses, dir: bankDir, log,
      settings: { n: s.bank.n, labels: 'uniform', cfg: s.bank.cfg, guideChannels: 3, sampler: 'ddim', steps: s.bank.steps, eta: 0, seed: s.seed, batchSize: s.bank.batch, clip: true },
    }));

    // 4. Fine-tuning, twice with the same budget and seed.
    const trainFiles = split.train.map((it) => path.relative(split.root, it.file)).join('\n');
    const runs = {} as Record<DemoMethod, FinetuneRun>;
    await timer.run(`Fine-tuning: full and Diff-Tuning, ${s.finetune.steps} steps of batch ${s.finetune.batch} each (lr ${s.finetune.lr}, EMA ${s.finetune.emaDecay.toPrecision(5)})`, async () => {
      for (const method of ['full', 'diff-tuning'] as const) {
        const t0 = Date.now();
        log(`    -- ${MODEL_NAMES[method]}`);
        const config = demoTrainConfig(s, method, { trainDir: target.trainDir, bankDir, runDir: path.join(out, 'runs', method) });
        const identity: Record<string, string> = { source: source.sha256, train: trainFiles };
        if (method === 'diff-tuning') identity.bank = JSON.stringify({ settings: bank.settings, model: bank.model.sha256, count: bank.count });
        runs[method] = await demoFinetune(config, identity, log);
        log(`    ${MODEL_NAMES[method]}: ${formatSeconds((Date.now() - t0) / 1000)}${runs[method].cached ? ' (reused)' : ''}`);
      }
    });

    // 5. Evaluation.
    const heldOutLabels = split.heldOut.map((it) => it.label);
    const evalLabels = proportionalLabels(heldOutLabels, s.evaluation.samples, s.seed);
    const gridOrder = gridIndices(evalLabels, s.gridImages);
    const loaded = new Map<EvaluatedModel, DiT>([['pretrained', source.model]]);
    const model = (which: EvaluatedModel): DiT => {
      let m = loaded.get(which);
      if (!m) {
        m = loadDiT(runs[which as DemoMethod].modelFile).model;
        models.push(m);
        loaded.set(which, m);
      }
      return m;
    };
    const metrics = await timer.run(`Evaluation: ${s.evaluation.samples} samples per model (DDIM ${s.evaluation.steps}, cfg ${s.evaluation.cfg}), ` +
      `FID/KID with '${extractor.name}' features against ${split.heldOut.length} held-out images`, async () => {
      reference = await referenceFromFiles(extractor, split.heldOut.map((it) => it.file), source.config.inputSize);
      return demoEvaluation({
        settings: s, extractor, reference, split, labels: evalLabels, gridOrder, model, names: MODEL_NAMES,
        samplesDir: path.join(out, 'samples'), reportDir, log,
      });
    });
    if (s.evaluation.samples < 1000) {
      warnings.push(`FID and KID come from ${s.evaluation.samples} samples per model: biased upward and noisy, so compare only the rows of this table with each other.`);
    }
    const promotion = relativePromotion(metrics.full.fid, metrics['diff-tuning'].fid);

    // 6. Chain of forgetting.
    const forgetting = await timer.run(`Chain of forgetting: the ${MODEL_NAMES[s.forgetting.model]} model on the noisy part, the pretrained model on the last ` +
      `${s.forgetting.splits.join('/')} of ${s.forgetting.steps} DDIM steps, ${s.forgetting.samples} samples each`, () => demoForgetting({
      settings: s, pretrained: source.model, finetuned: model(s.forgetting.model), labels: proportionalLabels(heldOutLabels, s.forgetting.samples, s.seed),
      extractor, reference: reference!, dir: path.join(reportDir, 'forgetting'), log,
    }));

    // 7. Forgetting of the source, as EWC.
    const ewc = await timer.run(`Forgetting of the source (EWC): the source's Fisher on its ${bank.count}-sample bank`, () => demoEwc({
      source: source.model, sourceFile: s.source, bankDir, items: bank.count, seed: s.seed, full: model('full'), diffTuning: model('diff-tuning'), log,
    }));

    // 8. Report.
    const report = await timer.run('Report', () => {
      writeFileAtomic(path.join(reportDir, 'loss.svg'), lossCurveSvg([
        { name: MODEL_NAMES.full, records: runs.full.log },
        { name: MODEL_NAMES['diff-tuning'], records: runs['diff-tuning'].log },
      ]));
      writeFileAtomic(path.join(reportDir, 'timesteps.svg'), timestepLawsSvg(1000, s.finetune.tau));
      const data: ReportData = {
        settings: s,
        source: { file: s.source, sha256: source.sha256, config: source.config, parameters: source.model.numParameters() },
        data: {
          name: s.dataset, dir: dataDir, classes: split.classes,
          train: classCounts(split, split.train), heldOut: split.heldOut.length,
          gridLabels: gridOrder.map((i) => split.classes[evalLabels[i]]),
        },
        bank: { count: bank.count },
        runs: (['full', 'diff-tuning'] as const).map((m) => ({ method: m, name: MODEL_NAMES[m], config: runs[m].config, cached: runs[m].cached, log: runs[m].log })),
        metrics: (['pretrained', 'full', 'diff-tuning'] as const).map((m) => ({ method: m, name: MODEL_NAMES[m], ...metrics[m] })),
        promotion,
        forgetting: {
          model: MODEL_NAMES[s.forgetting.model],
          points: forgetting.points,
          svg: path.relative(reportDir, forgetting.files.svg),
          grid: forgetting.files.grids[0] ? path.relative(reportDir, forgetting.files.grids[0]) : null,
        },
        ewc,
        extractor: { name: extractor.name, file: extractor.weightsFile ?? null, sha256: extractor.weightsHash ?? null },
        timings: timer.timings,
        warnings,
      };
      const resultsFile = path.join(reportDir, 'results.json');
      writeFileAtomic(resultsFile, JSON.stringify({
        metrics: Object.fromEntries(data.metrics.map((m) => [m.method, { fid: m.fid, kid: m.kid, kid_std: m.kidStd, n: m.n }])),
        relative_promotion: Number.isFinite(promotion) ? promotion : null,
        forgetting: data.forgetting.points.map((p) => ({ split: p.split, fid: p.fid })),
        ewc: { items: ewc.items, full: ewc.full.total, 'diff-tuning': ewc['diff-tuning'].total },
        extractor: data.extractor,
        settings: s,
        timings: timer.timings,
      }, null, 2) + '\n');
      const reportFile = path.join(reportDir, 'index.html');
      writeFileAtomic(reportFile, renderReportHtml(data));
      return { reportFile, resultsFile };
    });
    return { ...report, metrics, promotion, seconds: timer.elapsedSeconds };
  } finally {
    (reference as Reference | null)?.dispose();
    for (const m of models) m.dispose();
    if (!deps.extractor) extractor.dispose?.();
  }
}
