// Tensors to and from files: safetensors (read and write) and PyTorch .pt/.pth/.bin
// checkpoints (read only, through a pickle reader that never executes anything).
import * as fs from 'fs';
import { dtypeCode } from './dtype';
import { CheckpointError, RawTensor } from './io/raw';
import { forEachSafetensor, readSafetensorsHeader, writeSafetensors } from './io/safetensors';
import { pickStateDict, readTorchCheckpoint } from './io/torch-pickle';
import { native } from './native';
import type { OptimizerState } from './optim/optimizer';
import { Device, Tensor } from './tensor';

export { CheckpointError } from './io/raw';

export function tensorFromRaw(raw: RawTensor, device?: Device): Tensor {
  return new Tensor(native.fromBuffer(raw.data, raw.shape, dtypeCode(raw.dtype), device));
}

export function rawFromTensor(t: Tensor): RawTensor {
  return { dtype: t.dtype, shape: t.shape, data: t.bytes() };
}

/** Reads a safetensors file tensor by tensor (files over 2 GiB work; peak host memory is one tensor). */
export function loadSafetensors(path: string, o: { device?: Device; names?: string[] } = {}): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  forEachSafetensor(path, { names: o.names }, (name, raw) => out.set(name, tensorFromRaw(raw, o.device)));
  return out;
}

export function safetensorsMetadata(path: string): Record<string, string> {
  return readSafetensorsHeader(path).metadata;
}

/** Writes tensors (from any device) atomically: a temp file renamed into place. */
export function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>): void {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  writeSafetensors(path, new Map(entries.map(([k, t]) => [k, rawFromTensor(t)])), metadata);
}

function isSafetensors(path: string): boolean {
  if (path.endsWith('.safetensors')) return true;
  const fd = fs.openSync(path, 'r');
  try {
    const head = Buffer.alloc(9);
    const n = fs.readSync(fd, head, 0, 9, 0);
    // A zip (torch.save) starts with PK; safetensors with a u64 length then '{'.
    return n === 9 && head[8] === 0x7b;
  } finally {
    fs.closeSync(fd);
  }
}

export interface LoadCheckpointOptions {
  device?: Device;
  /** Which state dict of a training checkpoint ({model, ema, ...}); default EMA first, then model. */
  key?: string;
  /** Replace objects the reader will not build (e.g. argparse.Namespace) by placeholders, with a warning. */
  skipUnknown?: boolean;
}

/** A model state dict from a safetensors file or a PyTorch checkpoint, plus any reader warnings. */
export function loadCheckpoint(path: string, o: LoadCheckpointOptions = {}): { stateDict: Map<string, Tensor>; warnings: string[] } {
  if (!fs.existsSync(path)) throw new CheckpointError(path, 'file does not exist');
  if (isSafetensors(path)) return { stateDict: loadSafetensors(path, { device: o.device }), warnings: [] };
  const ckpt = readTorchCheckpoint(path, { skipUnknown: o.skipUnknown });
  const raw = pickStateDict(ckpt.value, o.key, path);
  const stateDict = new Map<string, Tensor>();
  for (const [k, r] of raw) stateDict.set(k, tensorFromRaw(r, o.device));
  return { stateDict, warnings: ckpt.warnings };
}

/** Saves an optimizer's state (tensors plus steps and hyperparameters) as one safetensors file. */
export function saveOptimizerState(path: string, state: OptimizerState): void {
  const tensors = new Map<string, Tensor>();
  const steps: Record<string, number> = {};
  for (const [i, st] of state.state) {
    steps[i] = st.step;
    for (const [name, t] of st.tensors) tensors.set(`state.${i}.${name}`, t);
  }
  saveSafetensors(path, tensors, {
    format: 'difftune-optimizer-v1',
    steps: JSON.stringify(steps),
    param_groups: JSON.stringify(state.paramGroups),
  });
}

export function loadOptimizerState(path: string): OptimizerState {
  const meta = safetensorsMetadata(path);
  if (meta.format !== 'difftune-optimizer-v1') {
    throw new CheckpointError(path, `metadata 'format' is ${JSON.stringify(meta.format)}, expected "difftune-optimizer-v1"`);
  }
  let steps: Record<string, number>;
  let paramGroups: OptimizerState['paramGroups'];
  try {
    steps = JSON.parse(meta.steps);
    paramGroups = JSON.parse(meta.param_groups);
  } catch (e) {
    throw new CheckpointError(path, `metadata 'steps'/'param_groups' is not valid JSON (${(e as Error).message})`);
  }
  const state: OptimizerState['state'] = new Map();
  for (const [key, t] of loadSafetensors(path)) {
    const m = /^state\.(\d+)\.(.+)$/.exec(key);
    if (!m) throw new CheckpointError(path, `tensor '${key}': expected a name like state.<index>.<buffer>`);
    const i = Number(m[1]);
    if (!state.has(i)) state.set(i, { step: steps[i] ?? 0, tensors: new Map() });
    state.get(i)!.tensors.set(m[2], t);
  }
  for (const [i, step] of Object.entries(steps)) if (!state.has(Number(i))) state.set(Number(i), { step, tensors: new Map() });
  return { state, paramGroups };
}
