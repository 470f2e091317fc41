// One run as the runner hands it to its child process (one-run.ts): everything the child needs,
// as a JSON file, and what the child answers.
import * as fs from 'fs';
import { RunSpec } from './plan';
import { FidResult } from './sample-fid';

export interface RunJob {
  spec: RunSpec;
  id: string;
  key: string;
  /** The run folder: config.json, log.jsonl, checkpoints/ (while it runs), model.safetensors, train-files.txt. */
  runDir: string;
  source: string;
  sourceConfig: string | null;
  /** The training data: the target folder (subsampled here), or with heldoutDir the training subset folder itself. */
  dataDir: string;
  /** Every target image not in dataDir: the FID reference (null: the target's eval split). */
  heldoutDir: string | null;
  /** In-loop FID evaluations (EMA weights) along the run, and their sample count (0: none). */
  curvePoints: number;
  curveSamples: number;
  /** Also evaluate the final EMA without guidance and the final raw weights. */
  finalVariants: boolean;
  /** The bank folder (its first spec.bankSize items are replayed); null when spec.bankSize is 0. */
  bankDir: string | null;
  steps: number;
  batch: number;
  trainSize: number;
  subsetSeed: number;
  emaDecay: number;
  device: string;
  evalSamples: number;
  evalSteps: number;
  evalBatch: number;
  cfg: number;
  extractor: string;
  /** Measure the fine-tuned EMA model's EWC against the source on this bank's first `items` items (null: skip). */
  ewc: { bankDir: string; items: number; draws: number; seed: number } | null;
}

/** EWC of a run's EMA weights against the source model (src/eval/ewc.ts), with the Fisher's settings. */
export interface RunEwc {
  items: number;
  draws: number;
  total: number;
  /** Weights the fine-tuning moved. */
  changed: number;
  meanOverChanged: number;
}

export interface RunOutcome extends FidResult {
  /** In-loop FID of the EMA weights: [step, fid] (runs with curvePoints > 0). */
  curve?: [number, number][];
  /** The final EMA without guidance, and the final raw weights with guidance (finalVariants). */
  cfg1?: FidResult;
  raw?: FidResult;
  trainImages: number;
  bankItems: number;
  trainSeconds: number;
  evalSeconds: number;
  stepSeconds: number;
  ewc?: RunEwc;
}

export function readJsonFile<T>(file: string, what: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${what} ${file} cannot be read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${what} ${file} is not valid JSON (${(e as Error).message})`);
  }
}
