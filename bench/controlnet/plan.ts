// The runs of bench:controlnet, one per (condition, method, seed), seed-major so a benchmark stopped
// early already has every cell for its first seeds; the key of a run hashes everything its number
// depends on, so a changed setting never reuses a stale result. Also the dry run's time estimate.
import * as crypto from 'crypto';
import { ConditionKind } from '../../src/data/conditions';
import { BenchSettings, ControlMethod, METHODS } from './settings';

export interface ControlRunSpec {
  condition: ConditionKind;
  method: ControlMethod;
  seed: number;
}

export function runId(r: ControlRunSpec): string {
  return `${r.condition}/${r.method}/seed=${r.seed}`;
}

export function planRuns(s: Pick<BenchSettings, 'conditions' | 'seeds'>): (ControlRunSpec & { id: string })[] {
  const out: (ControlRunSpec & { id: string })[] = [];
  for (let seed = 0; seed < s.seeds; seed++) {
    for (const condition of s.conditions) for (const method of METHODS) out.push({ condition, method, seed, id: runId({ condition, method, seed }) });
  }
  return out;
}

/** What a run's number depends on besides its spec. */
export interface ControlExperiment {
  sourceSha256: string;
  dataHash: string;
  steps: number;
  batch: number;
  lr: number;
  blocks: number | null;
  evalEvery: number;
  evalSamples: number;
  evalSteps: number;
  thresholdFraction: number;
  bank: { size: number; steps: number; cfg: number };
}

export function runKey(spec: ControlRunSpec, e: ControlExperiment): string {
  const identity = { id: runId(spec), ...e, bank: spec.method === 'diff-tuning' ? e.bank : null };
  return crypto.createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 24);
}

/**
 * Seconds a plan is expected to take, from a per-step time (training) and a per-sample-step time
 * (the evaluations' DDIM forward passes): rough, for the dry run.
 */
export function estimateSeconds(runs: number, s: Pick<BenchSettings, 'steps' | 'evalEvery' | 'evalSamples' | 'evalSteps' | 'bankSize' | 'bankSteps'>,
  o: { stepSeconds: number; sampleStepSeconds: number; bankNeeded: boolean }): number {
  const evaluations = Math.floor(s.steps / s.evalEvery) + 1;
  const perRun = s.steps * o.stepSeconds + evaluations * s.evalSamples * s.evalSteps * o.sampleStepSeconds;
  const bank = o.bankNeeded ? s.bankSize * s.bankSteps * 2 * o.sampleStepSeconds : 0;
  return runs * perRun + bank;
}
