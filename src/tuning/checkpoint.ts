// Training checkpoints: everything a run needs to continue bit for bit (model, EMA, optimizer
// state, RNG states, data cursors, counters) in ONE safetensors file, so a write is atomic (temp
// file + rename: a run killed mid-write leaves the previous checkpoint intact) and loading never
// executes code. Tensors are grouped by prefix; scalars and cursors live in the JSON metadata.
import * as fs from 'fs';
import * as path from 'path';
import { CheckpointError, loadSafetensors, safetensorsMetadata, saveSafetensors, Tensor } from '../torch';
import type { OptimizerState } from '../torch/optim/optimizer';

export const CHECKPOINT_FORMAT = 'difftune-train-v1';

export interface TrainingState {
  step: number;
  configHash: string;
  model: Map<string, Tensor>;
  ema: Map<string, Tensor>;
  optimizer: OptimizerState;
  /** Generator states by name ('cpu', 'cuda:0', ...). */
  rng: Map<string, Tensor>;
  /** JSON-serialisable progress: data cursors, NaN counters, ... */
  progress: Record<string, unknown>;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}.safetensors`;
}

export function saveTrainingState(file: string, s: TrainingState): void {
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of s.model) tensors.set(`model.${k}`, t);
  for (const [k, t] of s.ema) tensors.set(`ema.${k}`, t);
  const optSteps: Record<string, number> = {};
  for (const [i, st] of s.optimizer.state) {
    optSteps[i] = st.step;
    for (const [name, t] of st.tensors) tensors.set(`optim.${i}.${name}`, t);
  }
  for (const [k, t] of s.rng) tensors.set(`rng.${k}`, t);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  saveSafetensors(file, tensors, {
    format: CHECKPOINT_FORMAT,
    step: String(s.step),
    config_hash: s.configHash,
    optimizer_steps: JSON.stringify(optSteps),
    optimizer_groups: JSON.stringify(s.optimizer.paramGroups),
    progress: JSON.stringify(s.progress),
  });
}

function parseMeta<T>(file: string, meta: Record<string, string>, key: string): T {
  if (meta[key] === undefined) throw new CheckpointError(file, `metadata '${key}' is missing (not a difftune training checkpoint?)`);
  try {
    return JSON.parse(meta[key]) as T;
  } catch (e) {
    throw new CheckpointError(file, `metadata '${key}' is not valid JSON (${(e as Error).message})`);
  }
}

export function loadTrainingState(file: string): TrainingState {
  const meta = safetensorsMetadata(file);
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(file, `metadata 'format' is ${JSON.stringify(meta.format)}, expected "${CHECKPOINT_FORMAT}"`);
  }
  const step = parseMeta<number>(file, meta, 'step');
  if (!Number.isInteger(step) || step < 0) throw new CheckpointError(file, `metadata 'step' must be a non-negative integer, got ${meta.step}`);
  const optSteps = parseMeta<Record<string, number>>(file, meta, 'optimizer_steps');
  const s: TrainingState = {
    step,
    configHash: meta.config_hash ?? '',
    model: new Map(),
    ema: new Map(),
    optimizer: { state: new Map(), paramGroups: parseMeta(file, meta, 'optimizer_groups') },
    rng: new Map(),
    progress: parseMeta(file, meta, 'progress'),
  };
  for (const [key, t] of loadSafetensors(file)) {
    const dot = key.indexOf('.');
    const group = key.slice(0, dot);
    const rest = key.slice(dot + 1);
    if (group === 'model') s.model.set(rest, t);
    else if (group === 'ema') s.ema.set(rest, t);
    else if (group === 'rng') s.rng.set(rest, t);
    else if (group === 'optim') {
      const m = /^(\d+)\.(.+)$/.exec(rest);
      if (!m) throw new CheckpointError(file, `tensor '${key}': expected optim.<index>.<buffer>`);
      const i = Number(m[1]);
      if (!s.optimizer.state.has(i)) s.optimizer.state.set(i, { step: optSteps[i] ?? 0, tensors: new Map() });
      s.optimizer.state.get(i)!.tensors.set(m[2], t);
    } else {
      throw new CheckpointError(file, `tensor '${key}': unknown group '${group}' (expected model, ema, optim or rng)`);
    }
  }
  return s;
}

/** Complete checkpoints in a folder, oldest first (temp files of interrupted writes are ignored). */
export function listCheckpoints(dir: string): { step: number; file: string }[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((name) => ({ name, m: /^step-(\d+)\.safetensors$/.exec(name) }))
    .filter((e) => e.m)
    .map((e) => ({ step: Number(e.m![1]), file: path.join(dir, e.name) }))
    .sort((a, b) => a.step - b.step);
}

/** Deletes all but the newest `keep` checkpoints, and temp files left by killed writes. */
export function pruneCheckpoints(dir: string, keep: number): void {
  const all = listCheckpoints(dir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(c.file, { force: true });
  for (const name of fs.readdirSync(dir)) {
    const m = /\.tmp-(\d+)$/.exec(name);
    // Only temp files of processes that are gone: a live writer's file is not ours to delete.
    if (m && !processAlive(Number(m[1]))) fs.rmSync(path.join(dir, name), { force: true });
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
