// The benchmark's memory across sessions: one JSON line per finished run in OUT/runs.jsonl. A run
// is skipped when a record with its key is there. The key hashes the run's identity together with
// everything its number depends on (source weights, target data, steps, batch, training-set size,
// bank, evaluation protocol, extractor weights), so a changed setting never reuses a stale number.
import * as crypto from 'crypto';
import * as fs from 'fs';
import { JsonlLogger, readJsonl } from '../../src/report/jsonl';
import { RunSpec, runId } from './plan';
import type { FidResult } from './sample-fid';
import type { RunEwc } from './job';

/** What a run's number depends on besides its spec. */
export interface Experiment {
  sourceSha256: string;
  /** Content identity of the target folder (its dataset.json contentHash, else a file fingerprint). */
  dataHash: string;
  steps: number;
  batch: number;
  trainSize: number;
  subsetSeed: number;
  emaDecay: number;
  /** The bank's sampling settings (its size is in the spec). */
  bank: { steps: number; cfg: number; seed: number; sampler?: 'ddpm' };
  eval: { samples: number; steps: number; cfg: number; extractorSha256: string };
  /** The testbed's held-out protocol (absent: the eval split, final evaluation only). */
  protocol?: { heldout: true; grey: boolean; curvePoints: number; curveSamples: number; finalVariants: boolean };
}

/** A finished run as logged. */
export interface RunRecord extends RunSpec, Omit<FidResult, 'warnings'> {
  kind: 'run';
  key: string;
  id: string;
  trainImages: number;
  bankItems: number;
  trainSeconds: number;
  evalSeconds: number;
  /** Mean seconds per optimizer step (0 for the pretrained reference). */
  stepSeconds: number;
  device: string;
  /** In-loop FID of the EMA weights along the run, [step, fid] (curve runs). */
  curve?: [number, number][];
  /** Final FID of the EMA without guidance, and of the raw weights with guidance (finalVariants runs). */
  fidCfg1?: number;
  fidRaw?: number;
  /** EWC of the run's EMA weights against the source (runs made with --ewc-items > 0). */
  ewc?: RunEwc;
  /** The benchmark command that made the run. */
  command?: string;
  finished: string;
  warnings: string[];
}

export function runKey(spec: RunSpec, e: Experiment): string {
  const identity = { id: runId(spec), ...e };
  return crypto.createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 24);
}

const NUMBER_FIELDS = ['fid', 'kid', 'kidStd', 'seed', 'bankSize', 'samples', 'trainSeconds', 'evalSeconds', 'stepSeconds'] as const;

/** Records of a log (none when it does not exist); lines that are not run records are ignored, malformed run records throw naming the line. */
export function readRunRecords(file: string): RunRecord[] {
  if (!fs.existsSync(file)) return [];
  return readJsonl(file).flatMap((r, i) => {
    if (r.kind !== 'run') return [];
    for (const f of NUMBER_FIELDS) {
      if (typeof r[f] !== 'number') throw new Error(`${file}: record ${i + 1} (${String(r.id)}): '${f}' must be a number, got ${JSON.stringify(r[f])}`);
    }
    if (typeof r.key !== 'string' || typeof r.target !== 'string' || typeof r.method !== 'string') {
      throw new Error(`${file}: record ${i + 1}: expected string 'key', 'target' and 'method'`);
    }
    if (r.ewc !== undefined) {
      const e = r.ewc as Record<string, unknown>;
      if (typeof e !== 'object' || e === null || !['items', 'draws', 'total', 'changed', 'meanOverChanged'].every((k) => typeof e[k] === 'number')) {
        throw new Error(`${file}: record ${i + 1} (${String(r.id)}): 'ewc' must be {items, draws, total, changed, meanOverChanged} numbers`);
      }
    }
    return [r as unknown as RunRecord];
  });
}

/** Records by key; a key logged twice keeps its last record. */
export function recordsByKey(records: readonly RunRecord[]): Map<string, RunRecord> {
  return new Map(records.map((r) => [r.key, r]));
}

/** Appends one record (one write of one line: a kill never leaves half a record but a lost tail, which the reader drops). */
export function appendRunRecord(file: string, record: RunRecord): void {
  const log = new JsonlLogger(file, { append: true });
  try {
    log.write(record as unknown as Record<string, unknown>);
  } finally {
    log.close();
  }
}
