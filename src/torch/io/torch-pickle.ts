// torch.save reader: a zip archive holding `<archive>/data.pkl` (the object
// graph, unpickled safely) and `<archive>/data/<key>` (raw storages). Tensors
// come back as C-contiguous RawTensors gathered from storage + offset +
// size + stride, so views, transposes and shared storages all load correctly.
import {
  ByteSource, CheckpointError, DType, RawTensor, bufferSource, checkedNumel, copyBytes, isRawTensor,
  itemSize, openFileSource,
} from './raw';
import {
  CallContext, GlobalImpl, PyGlobal, PyOpaque, PyValue, describe, isTuple, unpickle,
} from './pickle';
import { ZipArchive, looksLikeZip } from './zip';

export interface TorchLoadOptions {
  /** Load non-allow-listed objects (e.g. argparse.Namespace) as Unrepresentable placeholders. */
  skipUnknown?: boolean;
  /**
   * Cap on bytes copied out of storages (views over the same or expanded
   * storage could otherwise amplify a small file). Default 4 x file size + 64 MiB.
   */
  maxMaterializedBytes?: number;
}

export interface TorchCheckpoint {
  /**
   * See PyValue in pickle.ts: tensors (and Parameters) are RawTensor, dicts and
   * OrderedDicts are Map, lists are arrays, tuples are frozen arrays.
   */
  value: PyValue;
  /** One line per distinct unsupported global replaced by a placeholder. */
  warnings: string[];
}

const STORAGE_DTYPES: Record<string, DType> = {
  'torch.FloatStorage': 'float32', 'torch.DoubleStorage': 'float64', 'torch.HalfStorage': 'float16',
  'torch.BFloat16Storage': 'bfloat16', 'torch.LongStorage': 'int64', 'torch.IntStorage': 'int32',
  'torch.ShortStorage': 'int16', 'torch.CharStorage': 'int8', 'torch.ByteStorage': 'uint8',
  'torch.BoolStorage': 'bool',
};

const DTYPE_GLOBALS = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** A loaded storage; tensors are views into it until materialised. */
class TorchStorage extends PyOpaque {
  /** Whether one tensor already took `data` itself instead of a copy. */
  handedOut = false;
  constructor(readonly key: string, readonly dtype: DType, readonly numel: number, readonly data: Uint8Array) {
    super();
  }
}

// Pickles written by the legacy (pre-1.6) torch.save start with this magic number.
const LEGACY_MAGIC = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

export function readTorchCheckpoint(path: string, opts: TorchLoadOptions = {}): TorchCheckpoint {
  const src = openFileSource(path);
  try {
    return loadFrom(src, opts);
  } finally {
    src.close();
  }
}

/** In-memory variant (tests, fuzzing). */
export function parseTorchCheckpoint(buf: Uint8Array, opts: TorchLoadOptions & { name?: string } = {}): TorchCheckpoint {
  return loadFrom(bufferSource(buf, opts.name ?? '<torch buffer>'), opts);
}

function loadFrom(src: ByteSource, opts: TorchLoadOptions): TorchCheckpoint {
  const file = src.name;
  if (src.size < 4) throw new CheckpointError(file, `file has ${src.size} bytes, too small to be a PyTorch checkpoint`);
  const head = src.read(0, Math.min(src.size, LEGACY_MAGIC.length), 'file signature');
  const budget = { left: opts.maxMaterializedBytes ?? 4 * src.size + 64 * 1024 * 1024 };
  // Deflated entries may inflate to no more than the same limit in all (a zip bomb is refused before it unpacks).
  if (looksLikeZip(head)) return loadZip(new ZipArchive(src), opts, budget, { left: budget.left });
  if (head.length === LEGACY_MAGIC.length && head.every((b, i) => b === LEGACY_MAGIC[i])) {
    throw new CheckpointError(file, 'legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with torch >= 1.6 (torch.save(torch.load(f), f)) or convert it to safetensors');
  }
  if (head[0] !== 0x80) {
    throw new CheckpointError(file, 'not a PyTorch checkpoint: neither a zip archive nor a protocol 2+ pickle');
  }
  // A bare pickle (pickle.dump): no storages can be attached to it.
  const data = src.read(0, src.size, 'pickle');
  const { value, warnings } = unpickle(data, {
    file, skipUnknown: opts.skipUnknown, globals: torchGlobals(budget),
  });
  return { value, warnings };
}

function loadZip(zip: ZipArchive, opts: TorchLoadOptions, budget: { left: number }, inflate: { left: number }): TorchCheckpoint {
  const file = zip.name;
  const pkls = [...zip.entries.keys()].filter((n) => n.endsWith('/data.pkl') && n.indexOf('/') === n.length - '/data.pkl'.length);
  if (pkls.length === 0) {
    throw new CheckpointError(file, "not a torch.save archive: no '<archive>/data.pkl' entry");
  }
  if (pkls.length > 1) {
    throw new CheckpointError(file, `ambiguous torch.save archive: several data.pkl entries (${pkls.join(', ')})`);
  }
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const byteorderName = `${prefix}byteorder`;
  if (zip.has(byteorderName)) {
    const order = Buffer.from(zip.read(byteorderName)).toString('latin1').trim();
    if (order === 'big') {
      throw new CheckpointError(file, `${byteorderName} says 'big': big-endian checkpoints are not supported; re-save it on a little-endian machine`);
    }
    if (order !== 'little') {
      throw new CheckpointError(file, `${byteorderName}: expected 'little', got ${JSON.stringify(order.slice(0, 40))}`);
    }
  }
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: PyValue, ctx: CallContext): PyValue => {
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') {
      ctx.fail(`persistent id must be ('storage', type, key, location, numel), got ${describe(pid)}`);
    }
    const [, type, key, , count] = pid as readonly PyValue[];
    const dtype = type instanceof PyGlobal ? STORAGE_DTYPES[type.qualname] : undefined;
    if (!dtype) ctx.fail(`unsupported storage type ${describe(type)} (expected one of ${Object.keys(STORAGE_DTYPES).join(', ')})`);
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(key)) ctx.fail(`invalid storage key ${describe(key)}`);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) ctx.fail(`storage '${key}': invalid element count ${String(count)}`);
    const k = key as string;
    const n = count as number;
    const cached = storages.get(k);
    if (cached) {
      if (cached.dtype !== dtype || cached.numel !== n) {
        ctx.fail(`storage '${k}' is used as ${cached.dtype}[${cached.numel}] and as ${dtype}[${n}]`);
      }
      return cached;
    }
    const entry = `${prefix}data/${k}`;
    if (!zip.has(entry)) ctx.fail(`storage '${k}': entry '${entry}' is missing from the archive`);
    const bytes = n * itemSize(dtype!);
    const e = zip.entries.get(entry)!;
    if (e.uncompressedSize !== bytes) {
      ctx.fail(`storage '${k}': entry '${entry}' has ${e.uncompressedSize} bytes, expected ${bytes} (${n} x ${dtype})`);
    }
    let data = zip.read(entry, inflate);
    // Typed-array gathers need element-aligned storage bytes.
    if (data.byteOffset % 8 !== 0) data = copyBytes(data, 0, data.length);
    const st = new TorchStorage(k, dtype!, n, data);
    storages.set(k, st);
    return st;
  };
  const pkl = zip.read(pkls[0], inflate);
  const { value, warnings } = unpickle(pkl, {
    file, label: pkls[0], skipUnknown: opts.skipUnknown, globals: torchGlobals(budget), persistentLoad,
  });
  return { value, warnings };
}

/** The torch-specific allow-list (pure JS implementations only). */
function torchGlobals(budget: { left: number }): Map<string, GlobalImpl> {
  const g = new Map<string, GlobalImpl>();
  g.set('torch._utils._rebuild_tensor_v2', {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    call(args, ctx) {
      if (args.length < 4 || args.length > 7) ctx.fail(`_rebuild_tensor_v2 expects 6 or 7 arguments, got ${args.length}`);
      return materialise(args[0], args[1], args[2], args[3], ctx, budget);
    },
  });
  const param = (min: number, max: number) => ({
    call(args: PyValue[], ctx: CallContext): PyValue {
      if (args.length < min || args.length > max || !isRawTensor(args[0])) {
        ctx.fail(`expected (tensor, requires_grad, hooks${max > 3 ? ', state' : ''}), got ${args.length} arguments starting with ${describe(args[0])}`);
      }
      // A Parameter is just its data here; requires_grad and hooks are training-time state.
      return args[0];
    },
  });
  g.set('torch._utils._rebuild_parameter', param(2, 3));
  g.set('torch._utils._rebuild_parameter_with_state', param(4, 4));
  g.set('torch.device', {
    call(args, ctx) {
      if (args.length === 1 && typeof args[0] === 'string') return args[0];
      if (args.length === 2 && typeof args[0] === 'string' && typeof args[1] === 'number') return `${args[0]}:${args[1]}`;
      return ctx.fail('torch.device expects (type) or (type, index)');
    },
  });
  // Referenced only as markers (storage types in persistent ids, dtype values).
  for (const s of Object.keys(STORAGE_DTYPES)) g.set(s, {});
  for (const d of DTYPE_GLOBALS) g.set(`torch.${d}`, {});
  return g;
}

function isIntList(v: PyValue): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0);
}

/** Copy a strided view of a storage into a fresh C-contiguous RawTensor. */
function materialise(
  storage: PyValue, offset: PyValue, size: PyValue, stride: PyValue, ctx: CallContext, budget: { left: number },
): RawTensor {
  if (!(storage instanceof TorchStorage)) return ctx.fail(`tensor storage must be a torch storage, got ${describe(storage)}`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) return ctx.fail(`invalid storage offset ${String(offset)}`);
  if (!isIntList(size)) return ctx.fail('tensor size must be a tuple of non-negative integers');
  if (!isIntList(stride) || stride.length !== size.length) {
    return ctx.fail(`tensor stride must be ${size.length} non-negative integers`);
  }
  const shape = size.map((d) => d + 0); // a float -0 from a crafted pickle becomes 0
  const count = checkedNumel(shape);
  const s = itemSize(storage.dtype);
  if (count < 0 || !Number.isSafeInteger(count * s)) return ctx.fail(`tensor size [${shape.join(', ')}] is too large`);
  if (count === 0) return { dtype: storage.dtype, shape, data: new Uint8Array(0) };

  let last = offset;
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * stride[d];
  if (!Number.isSafeInteger(last) || last >= storage.numel) {
    return ctx.fail(`tensor (offset ${offset}, size [${shape.join(', ')}], stride [${stride.join(', ')}]) reaches element ${last} of storage '${storage.key}' which has ${storage.numel}`);
  }
  let contiguous = true;
  for (let d = shape.length - 1, expect = 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expect) { contiguous = false; break; }
    expect *= shape[d];
  }
  const bytes = count * s;
  // The first tensor covering a whole storage takes its buffer; everyone else copies.
  if (contiguous && offset === 0 && count === storage.numel && !storage.handedOut) {
    storage.handedOut = true;
    return { dtype: storage.dtype, shape, data: storage.data };
  }
  if (bytes > budget.left) {
    return ctx.fail(`tensor views copy more than the checkpoint holds (limit maxMaterializedBytes reached at a ${bytes}-byte tensor)`);
  }
  budget.left -= bytes;
  if (contiguous) {
    return { dtype: storage.dtype, shape, data: copyBytes(storage.data, offset * s, offset * s + bytes) };
  }
  return { dtype: storage.dtype, shape, data: gather(storage, offset, shape, stride) };
}

function gather(storage: TorchStorage, offset: number, shape: number[], stride: number[]): Uint8Array {
  const s = itemSize(storage.dtype);
  const unit = Math.min(s, 4); // copy whole words; 8-byte items as two u32 (bit-exact, no NaN canonicalisation)
  const per = s / unit;
  const count = checkedNumel(shape);
  const out = new Uint8Array(count * s);
  const mk = (b: Uint8Array) => unit === 1 ? b
    : unit === 2 ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2)
      : new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  const src = mk(storage.data);
  const dst = mk(out);
  const nd = shape.length;
  const inner = shape[nd - 1];
  const innerStride = stride[nd - 1];
  const counters = new Array<number>(nd).fill(0);
  let base = offset;
  let o = 0;
  for (let row = 0, rows = count / inner; row < rows; row++) {
    let e = base;
    for (let j = 0; j < inner; j++, e += innerStride) {
      const at = e * per;
      for (let w = 0; w < per; w++) dst[o++] = src[at + w];
    }
    // Odometer over the outer dimensions.
    for (let d = nd - 2; d >= 0; d--) {
      counters[d]++;
      base += stride[d];
      if (counters[d] < shape[d]) break;
      base -= stride[d] * shape[d];
      counters[d] = 0;
    }
  }
  return out;
}

const MAX_FLATTEN_DEPTH = 64;

/**
 * Flatten nested dicts/lists of tensors into dotted names
 * ({"a": {"b": t}} -> "a.b"; list items by index). Non-tensor leaves and
 * placeholders are skipped; cycles and absurd nesting are cut off.
 */
export function flattenStateDict(value: PyValue, prefix = ''): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  const onPath = new Set<object>();
  const walk = (v: PyValue, name: string, depth: number): void => {
    if (isRawTensor(v)) { out.set(name, v); return; }
    if (typeof v !== 'object' || v === null || depth >= MAX_FLATTEN_DEPTH || onPath.has(v)) return;
    const join = (k: PyValue) => (name === '' ? String(k) : `${name}.${String(k)}`);
    onPath.add(v);
    if (v instanceof Map) {
      for (const [k, child] of v) {
        if (typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint') walk(child, join(k), depth + 1);
      }
    } else if (Array.isArray(v)) {
      v.forEach((child, i) => walk(child, join(i), depth + 1));
    }
    onPath.delete(v);
  };
  walk(value, prefix, 0);
  return out;
}

/** Keys tried, in order, when a training checkpoint holds several state dicts (EMA first, as DiT's sampler does). */
export const STATE_DICT_KEYS = ['ema', 'model', 'state_dict', 'model_state_dict', 'module', 'net'];

/**
 * The model weights in a checkpoint: either the value itself is a state dict
 * (all values tensors), or `key` (default: the first of STATE_DICT_KEYS
 * present) selects one inside a training checkpoint such as
 * {model, ema, opt, args}.
 */
export function pickStateDict(value: PyValue, key?: string, where = '<checkpoint>'): Map<string, RawTensor> {
  if (!(value instanceof Map)) throw new CheckpointError(where, `expected a dict at the top level, got ${describe(value)}`);
  const keys = [...value.keys()].map(String).join(', ');
  if (key !== undefined) {
    if (!value.has(key)) throw new CheckpointError(where, `no '${key}' entry (top-level keys: ${keys})`);
    const sd = flattenStateDict(value.get(key)!);
    if (sd.size === 0) throw new CheckpointError(where, `entry '${key}' holds no tensors`);
    return sd;
  }
  if (value.size > 0 && [...value.values()].every(isRawTensor)) return flattenStateDict(value);
  for (const k of STATE_DICT_KEYS) {
    if (!value.has(k)) continue;
    const sd = flattenStateDict(value.get(k)!);
    if (sd.size > 0) return sd;
  }
  throw new CheckpointError(where, `no state dict found: expected tensors at the top level or under one of ${STATE_DICT_KEYS.join(', ')} (top-level keys: ${keys})`);
}
