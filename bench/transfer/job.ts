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
  dataDir: string;
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
}

export interface RunOutcome extends FidResult {
  trainImages: number;
  bankItems: number;
  trainSeconds: number;
  evalSeconds: number;
  stepSeconds: number;
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
