// Loading the FID Inception-v3 weights the user supplies (never downloaded): pytorch-fid's
// pt_inception-2015-12-05-6726825d.pth, any torch.save of fid_inception_v3().state_dict() or of
// pytorch-fid's InceptionV3 wrapper (blocks.<i>.<j>... names), or a safetensors file of either.
// pt_inception-2015-12-05 predates torch 1.6, so it is in torch.save's legacy (non-zip) format,
// which src/torch's reader refuses; the legacy reader here covers it with the same safe unpickler.
import * as fs from 'fs';
import { CheckpointError, DType as RawDType, RawTensor, checkedNumel, itemSize } from '../torch/io/raw';
import { CallContext, GlobalImpl, PyGlobal, PyOpaque, PyValue, describe, isTuple, unpickle } from '../torch/io/pickle';
import { loadCheckpoint, tensorFromRaw } from '../torch/serialization';
import { DType } from '../torch/dtype';
import { Device, Tensor } from '../torch/tensor';
import { FidInceptionV3, FidInceptionOptions } from './inception';

// ---------------------------------------------------------------------------------------------
// torch.save legacy format (torch < 1.6): five pickles in a row (magic number, protocol
// version, system info, the object with storages as persistent ids, the sorted storage keys),
// then each storage's bytes, preceded by its element count as an int64.
// ---------------------------------------------------------------------------------------------

const LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;
// The file starts with pickle protocol 2 (0x80 0x02) then LONG1 of the magic number.
const LEGACY_SIGNATURE = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

const STORAGE_DTYPES: Record<string, RawDType> = {
  'torch.FloatStorage': 'float32', 'torch.DoubleStorage': 'float64', 'torch.HalfStorage': 'float16',
  'torch.BFloat16Storage': 'bfloat16', 'torch.LongStorage': 'int64', 'torch.IntStorage': 'int32',
  'torch.ShortStorage': 'int16', 'torch.CharStorage': 'int8', 'torch.ByteStorage': 'uint8', 'torch.BoolStorage': 'bool',
};

/** A storage named by the object pickle; its bytes come later in the file. */
class LegacyStorage extends PyOpaque {
  data: Uint8Array | null = null;
  constructor(readonly key: string, readonly dtype: RawDType, readonly numel: number) {
    super();
  }
}

/** A storage view (legacy files could pickle a slice of a storage): elements [offset, offset + numel). */
class LegacyStorageView extends PyOpaque {
  constructor(readonly root: LegacyStorage, readonly offset: number, readonly numel: number) {
    super();
  }
}

/** A tensor waiting for its storage bytes. */
class PendingTensor extends PyOpaque {
  constructor(readonly storage: LegacyStorageView, readonly offset: number, readonly shape: number[], readonly stride: number[]) {
    super();
  }
}

/** Whether a file starts like a legacy torch.save pickle. */
export function isLegacyTorchFile(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(LEGACY_SIGNATURE.length);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return n === head.length && head.every((b, i) => b === LEGACY_SIGNATURE[i]);
  } finally {
    fs.closeSync(fd);
  }
}

function isNonNegativeInt(v: PyValue): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function legacyGlobals(): Map<string, GlobalImpl> {
  const g = new Map<string, GlobalImpl>();
  const rebuild = (args: PyValue[], ctx: CallContext): PyValue => {
    // _rebuild_tensor(storage, offset, size, stride) and _rebuild_tensor_v2(..., requires_grad, hooks[, metadata])
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof LegacyStorageView)) return ctx.fail(`tensor storage must be a torch storage, got ${describe(storage)}`);
    if (!isNonNegativeInt(offset)) return ctx.fail(`invalid storage offset ${String(offset)}`);
    if (!Array.isArray(size) || !size.every(isNonNegativeInt)) return ctx.fail('tensor size must be non-negative integers');
    if (!Array.isArray(stride) || stride.length !== size.length || !stride.every(isNonNegativeInt)) {
      return ctx.fail(`tensor stride must be ${(size as PyValue[]).length} non-negative integers`);
    }
    return new PendingTensor(storage, offset, (size as number[]).map((d) => d + 0), [...(stride as number[])]);
  };
  g.set('torch._utils._rebuild_tensor', {
    call: (args, ctx) => (args.length === 4 ? rebuild(args, ctx) : ctx.fail(`_rebuild_tensor expects 4 arguments, got ${args.length}`)),
  });
  g.set('torch._utils._rebuild_tensor_v2', {
    call: (args, ctx) => (args.length >= 6 && args.length <= 7 ? rebuild(args, ctx) : ctx.fail(`_rebuild_tensor_v2 expects 6 or 7 arguments, got ${args.length}`)),
  });
  // A Parameter is its data here; requires_grad and hooks are training state.
  g.set('torch._utils._rebuild_parameter', {
    call: (args, ctx) => (args[0] instanceof PendingTensor ? args[0] : ctx.fail(`_rebuild_parameter expects a tensor, got ${describe(args[0])}`)),
  });
  for (const s of Object.keys(STORAGE_DTYPES)) g.set(s, {});
  return g;
}

/** Copies a strided view out of its storage into a C-contiguous tensor. */
function materialise(t: PendingTensor, file: string): RawTensor {
  const { root } = t.storage;
  const s = itemSize(root.dtype);
  const count = checkedNumel(t.shape);
  if (count === 0) return { dtype: root.dtype, shape: t.shape, data: new Uint8Array(0) };
  let last = t.offset;
  for (let d = 0; d < t.shape.length; d++) last += (t.shape[d] - 1) * t.stride[d];
  if (last >= t.storage.numel) {
    throw new CheckpointError(file, `a tensor of shape [${t.shape}] reaches element ${last} of storage '${root.key}', which has ${t.storage.numel}`);
  }
  const src = root.data!;
  const base = t.storage.offset + t.offset;
  let contiguous = true;
  for (let d = t.shape.length - 1, expect = 1; d >= 0; d--) {
    if (t.shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.shape[d];
  }
  // slice() copies into a fresh, aligned buffer (a state dict's tensors are contiguous).
  if (contiguous) return { dtype: root.dtype, shape: t.shape, data: src.slice(base * s, (base + count) * s) };
  const out = new Uint8Array(count * s);
  const index = new Array<number>(t.shape.length).fill(0);
  for (let o = 0; o < count; o++) {
    let e = base;
    for (let d = 0; d < index.length; d++) e += index[d] * t.stride[d];
    out.set(src.subarray(e * s, (e + 1) * s), o * s);
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
  return { dtype: root.dtype, shape: t.shape, data: out };
}

/**
 * The tensors of a legacy-format torch.save file holding a (possibly nested) dict of tensors,
 * with dotted names. Only data is built: any other pickle global is refused.
 */
export function readLegacyTorchStateDict(file: string): Map<string, RawTensor> {
  const buf = fs.readFileSync(file);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const next = (start: number, label: string, extra: Partial<Parameters<typeof unpickle>[1]> = {}) =>
    unpickle(bytes, { file, label, ...extra }, start);
  const magic = next(0, 'magic number');
  if (magic.value !== LEGACY_MAGIC_NUMBER) throw new CheckpointError(file, 'not a legacy torch.save file (wrong magic number)');
  const version = next(magic.end, 'protocol version');
  if (version.value !== LEGACY_PROTOCOL_VERSION) {
    throw new CheckpointError(file, `legacy torch.save protocol version ${String(version.value)}, expected ${LEGACY_PROTOCOL_VERSION}`);
  }
  const sysInfo = next(version.end, 'system info');
  if (sysInfo.value instanceof Map && sysInfo.value.get('little_endian') === false) {
    throw new CheckpointError(file, 'big-endian checkpoints are not supported; re-save it on a little-endian machine');
  }
  const storages = new Map<string, LegacyStorage>();
  const persistentLoad = (pid: PyValue, ctx: CallContext): PyValue => {
    // ('storage', storage_type, root_key, location, numel, view_metadata)
    if (!isTuple(pid) || pid.length !== 6 || pid[0] !== 'storage') {
      return ctx.fail(`persistent id must be ('storage', type, key, location, numel, view), got ${describe(pid)}`);
    }
    const [, type, key, , numel, view] = pid;
    const dtype = type instanceof PyGlobal ? STORAGE_DTYPES[type.qualname] : undefined;
    if (!dtype) return ctx.fail(`unsupported storage type ${describe(type)}`);
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(key)) return ctx.fail(`invalid storage key ${describe(key)}`);
    if (!isNonNegativeInt(numel)) return ctx.fail(`storage '${key}': invalid element count ${String(numel)}`);
    let root = storages.get(key);
    if (!root) storages.set(key, (root = new LegacyStorage(key, dtype, numel)));
    if (root.dtype !== dtype || root.numel !== numel) return ctx.fail(`storage '${key}' is used with two types or sizes`);
    if (view === null) return new LegacyStorageView(root, 0, numel);
    if (!isTuple(view) || view.length !== 3 || !isNonNegativeInt(view[1]) || !isNonNegativeInt(view[2]) || view[1] + view[2] > numel) {
      return ctx.fail(`storage '${key}': invalid view ${describe(view)}`);
    }
    return new LegacyStorageView(root, view[1] as number, view[2] as number);
  };
  const main = next(sysInfo.end, 'object', { globals: legacyGlobals(), persistentLoad });
  const keys = next(main.end, 'storage keys');
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === 'string')) {
    throw new CheckpointError(file, 'storage keys: expected a list of strings');
  }
  let pos = keys.end;
  for (const key of keys.value as string[]) {
    const st = storages.get(key);
    if (!st) throw new CheckpointError(file, `storage '${key}' is listed but no tensor uses it`);
    if (pos + 8 > bytes.length) throw new CheckpointError(file, `truncated before storage '${key}'`);
    const count = Number(buf.readBigInt64LE(pos));
    if (count !== st.numel) throw new CheckpointError(file, `storage '${key}' holds ${count} elements, the pickle says ${st.numel}`);
    const size = count * itemSize(st.dtype);
    if (pos + 8 + size > bytes.length) throw new CheckpointError(file, `truncated in storage '${key}' (needs ${size} bytes at ${pos + 8})`);
    st.data = bytes.subarray(pos + 8, pos + 8 + size);
    pos += 8 + size;
  }
  for (const st of storages.values()) if (!st.data) throw new CheckpointError(file, `storage '${st.key}' has no data in the file`);
  const out = new Map<string, RawTensor>();
  const walk = (v: PyValue, name: string, depth: number): void => {
    if (v instanceof PendingTensor) out.set(name, materialise(v, file));
    else if (v instanceof Map && depth < 16) for (const [k, child] of v) walk(child, name ? `${name}.${String(k)}` : String(k), depth + 1);
  };
  walk(main.value, '', 0);
  if (out.size === 0) throw new CheckpointError(file, 'holds no tensors');
  return out;
}

// ---------------------------------------------------------------------------------------------
// The FID network's weights
// ---------------------------------------------------------------------------------------------

/** The modules of each block of pytorch-fid's InceptionV3 wrapper, by their Inception3 names. */
const WRAPPER_BLOCKS: readonly (readonly string[])[] = [
  ['Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3'],
  ['Conv2d_3b_1x1', 'Conv2d_4a_3x3'],
  ['Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e'],
  ['Mixed_7a', 'Mixed_7b', 'Mixed_7c'],
];

/** pytorch-fid's InceptionV3 key (blocks.<i>.<j>.rest) -> the fid_inception_v3 key, or null if it is not one. */
export function wrapperKeyToInception3(key: string): string | null {
  const m = /^blocks\.(\d+)\.(\d+)\.(.+)$/.exec(key);
  const name = m ? WRAPPER_BLOCKS[Number(m[1])]?.[Number(m[2])] : undefined;
  return name ? `${name}.${m![3]}` : null;
}

export interface LoadFidInceptionOptions extends FidInceptionOptions {
  device?: Device;
  /** Compute dtype; default float32 (the weights are float32). */
  dtype?: DType;
}

/**
 * The FID Inception-v3 with weights from `file` (pt_inception-2015-12-05-6726825d.pth or a
 * re-save of it as .pt or .safetensors). Strict: a missing, unexpected or mis-shaped tensor is an
 * error naming the file and the keys. BatchNorm num_batches_tracked may be absent (older files),
 * and so may fc.* in the wrapper layout, which never has them (they do not feed the features).
 */
export function loadFidInception(file: string, o: LoadFidInceptionOptions = {}): FidInceptionV3 {
  if (!fs.existsSync(file)) throw new Error(`${file}: FID Inception weights not found (pt_inception-2015-12-05-6726825d.pth from pytorch-fid; nothing is downloaded)`);
  const sd = new Map<string, Tensor>();
  if (isLegacyTorchFile(file)) {
    for (const [k, raw] of readLegacyTorchStateDict(file)) sd.set(k, tensorFromRaw(raw));
  } else {
    for (const [k, t] of loadCheckpoint(file).stateDict) sd.set(k, t);
  }
  const model = new FidInceptionV3(o);
  try {
    const wrapper = [...sd.keys()].some((k) => k.startsWith('blocks.'));
    const named = new Map<string, Tensor>();
    for (const [k, t] of sd) named.set(wrapper ? wrapperKeyToInception3(k) ?? k : k, t);
    for (const [k, t] of model.stateDict()) {
      const optional = k.endsWith('.num_batches_tracked') || (wrapper && k.startsWith('fc.'));
      if (optional && !named.has(k)) named.set(k, t);
    }
    model.loadStateDict(named, { what: file });
  } catch (e) {
    for (const p of [...model.parameters(), ...model.namedBuffers().map(([, b]) => b)]) p.dispose();
    throw e;
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  if (o.device || o.dtype) model.to({ device: o.device, dtype: o.dtype });
  return model.eval();
}
