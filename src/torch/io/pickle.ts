// A safe unpickler: a stack machine over the protocol 2-5 opcodes torch.save
// emits. Python's pickle runs arbitrary callables named in the file; here a
// global resolves only through an allow-list of pure JS implementations, so
// loading a file can never execute anything. The VM is iterative and every
// declared length is checked against the remaining input, so memory and time
// stay proportional to the input size.
import { CheckpointError, RawTensor, copyBytes } from './raw';

/**
 * Python values as loaded:
 * - None -> null, bool -> boolean, float -> number
 * - int -> number when it is a safe integer, otherwise bigint
 * - str -> string, bytes/bytearray -> Uint8Array
 * - list -> array; tuple -> *frozen* array (see isTuple)
 * - dict / OrderedDict -> Map (keeps order and non-string keys)
 * - set / frozenset -> Set
 * - allow-listed global (e.g. torch.float32) -> PyGlobal
 * - anything else under skipUnknown -> Unrepresentable
 * - hook results (torch tensors -> RawTensor, or PyOpaque subclasses)
 */
export type PyValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PyValue[] | Map<PyValue, PyValue> | Set<PyValue>
  | PyGlobal | Unrepresentable | PyOpaque | RawTensor;

/** Base for values produced by hooks that are neither data nor tensors. */
export abstract class PyOpaque {}

export type CallImpl = (args: PyValue[], ctx: CallContext) => PyValue;

/** Allow-list entry. Without `call` the global can be referenced but not called. */
export interface GlobalImpl {
  call?: CallImpl;
}

export interface CallContext {
  readonly file: string;
  fail(message: string): never;
  warn(message: string): void;
}

/** A resolved, allow-listed global such as `torch.float32` or `torch.FloatStorage`. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string, readonly impl: GlobalImpl) {}
  get qualname(): string { return `${this.module}.${this.name}`; }
}

/**
 * Stand-in for an object whose class is not allow-listed (skipUnknown mode).
 * Keeps what the pickle said about it, so e.g. an argparse.Namespace's fields
 * stay readable in `state`.
 */
export class Unrepresentable {
  /** Constructor arguments (REDUCE/NEWOBJ), or null for the bare global. */
  args: PyValue[] | null = null;
  kwargs: PyValue | null = null;
  /** BUILD state (usually the instance __dict__). */
  state: PyValue | undefined = undefined;
  /** Items appended (list subclasses) or set (dict subclasses). */
  listItems: PyValue[] = [];
  dictItems = new Map<PyValue, PyValue>();
  constructor(readonly global: string) {}
}

export function isTuple(v: unknown): v is readonly PyValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

function tuple(items: PyValue[]): PyValue[] {
  return Object.freeze(items) as PyValue[];
}

// BUILD state on containers/tensors (e.g. an OrderedDict's `_metadata`) is
// kept out of the value itself so Maps and arrays stay plain.
const attributes = new WeakMap<object, PyValue>();

/** The BUILD state recorded for an object (e.g. a state_dict's `_metadata`). */
export function pyAttributes(obj: object): PyValue | undefined {
  return attributes.get(obj);
}

export interface UnpickleOptions {
  /** File path used in error messages. */
  file?: string;
  /** Prefix for messages, e.g. the zip entry name. */
  label?: string;
  /** Replace non-allow-listed globals with Unrepresentable instead of failing. */
  skipUnknown?: boolean;
  /** Extra allow-listed globals, keyed by `module.name`. */
  globals?: ReadonlyMap<string, GlobalImpl>;
  /** Resolves BINPERSID ids (torch storages). Without it persistent ids are an error. */
  persistentLoad?: (pid: PyValue, ctx: CallContext) => PyValue;
  /** Largest LONG1/LONG4 integer, in bytes (default 1024). */
  maxLongBytes?: number;
}

export interface UnpickleResult {
  value: PyValue;
  warnings: string[];
  /** Offset just past STOP (legacy torch files hold several pickles in a row). */
  end: number;
}

function newOrderedDict(args: PyValue[], ctx: CallContext): PyValue {
  const m = new Map<PyValue, PyValue>();
  if (args.length === 0) return m;
  if (args.length !== 1 || !Array.isArray(args[0])) ctx.fail('OrderedDict() expects no arguments or a list of pairs');
  for (const pair of args[0] as PyValue[]) {
    if (!Array.isArray(pair) || pair.length !== 2) ctx.fail('OrderedDict() items must be (key, value) pairs');
    m.set(checkHashable(pair[0], ctx), pair[1]);
  }
  return m;
}

function newSet(args: PyValue[], ctx: CallContext): PyValue {
  if (args.length === 0) return new Set();
  if (args.length !== 1 || !Array.isArray(args[0])) ctx.fail('set() expects one list argument');
  const s = new Set<PyValue>();
  for (const v of args[0] as PyValue[]) s.add(checkHashable(v, ctx));
  return s;
}

/** Globals every Python pickle may use that are plain data constructors. */
export const BASE_GLOBALS: ReadonlyMap<string, GlobalImpl> = new Map<string, GlobalImpl>([
  ['collections.OrderedDict', { call: newOrderedDict }],
  ['builtins.set', { call: newSet }],
  ['builtins.frozenset', { call: newSet }],
  // Protocol 2 has no bytes opcode: Python 3 writes bytes as _codecs.encode(str, 'latin1').
  ['_codecs.encode', {
    call(args, ctx) {
      if (args.length !== 2 || typeof args[0] !== 'string' || (args[1] !== 'latin1' && args[1] !== 'latin-1')) {
        ctx.fail("_codecs.encode is only supported as encode(str, 'latin1') (how protocol 2 stores bytes)");
      }
      return Uint8Array.from(Buffer.from(args[0] as string, 'latin1'));
    },
  }],
]);

// Python 2 names that Python 3's pickler writes for protocol < 3 (fix_imports).
const MODULE_ALIASES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

function checkHashable(key: PyValue, ctx: CallContext): PyValue {
  if ((Array.isArray(key) && !Object.isFrozen(key)) || key instanceof Map || key instanceof Set) {
    ctx.fail(`unhashable ${describe(key)} used as a dict key or set item`);
  }
  return key;
}

export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof Map) return 'dict';
  if (v instanceof Set) return 'set';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof PyGlobal) return `global '${v.qualname}'`;
  if (v instanceof Unrepresentable) return `placeholder for '${v.global}'`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

const OP_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x4a: 'BININT',
  0x4b: 'BININT1', 0x4d: 'BININT2', 0x4e: 'NONE', 0x51: 'BINPERSID', 0x52: 'REDUCE',
  0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD',
  0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x68: 'BINGET',
  0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x88: 'NEWTRUE',
  0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE',
  0x95: 'FRAME', 0x96: 'BYTEARRAY8',
};

const utf8 = new TextDecoder('utf-8');

/** Run the pickle in `data` (from offset `start`) up to its STOP opcode. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}, start = 0): UnpickleResult {
  const file = opts.file ?? '<pickle>';
  const label = opts.label ?? 'pickle';
  const maxLong = opts.maxLongBytes ?? 1024;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const warnings: string[] = [];
  const warned = new Set<string>();
  let pos = start;
  let opPos = start;
  let op = 0;

  const fail = (message: string): never => {
    const where = op < 0 ? `at byte ${opPos}` : `opcode ${OP_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`} at byte ${opPos}`;
    throw new CheckpointError(file, `${label}: ${message} (${where})`);
  };
  const ctx: CallContext = {
    file,
    fail,
    warn(message) {
      if (!warned.has(message)) { warned.add(message); warnings.push(message); }
    },
  };

  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  const memo = new Map<number, PyValue>();

  const need = (n: number): void => {
    if (n > data.length - pos) fail(`truncated: needs ${n} more bytes, only ${data.length - pos} left`);
  };
  const u8 = (): number => { need(1); return data[pos++]; };
  const u16 = (): number => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const i32 = (): number => { need(4); const v = dv.getInt32(pos, true); pos += 4; return v; };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    // Anything this large cannot fit in the remaining input anyway.
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const b = copyBytes(data, pos, pos + n);
    pos += n;
    return b;
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) fail('truncated: missing newline after GLOBAL name');
    const s = utf8.decode(data.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const pop = (): PyValue => {
    if (stack.length === 0) fail('stack underflow');
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail('no MARK on the stack');
    stack = prev as PyValue[];
    return items;
  };
  const toInt = (b: bigint): number | bigint =>
    b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  const readLong = (n: number): number | bigint => {
    if (n > maxLong) fail(`integer of ${n} bytes exceeds the ${maxLong}-byte limit`);
    const b = bytes(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return toInt(v);
  };
  const resolveGlobal = (module: string, name: string): PyValue => {
    const mod = MODULE_ALIASES[module] ?? module;
    const qual = `${mod}.${name}`;
    const impl = opts.globals?.get(qual) ?? BASE_GLOBALS.get(qual);
    if (impl) return new PyGlobal(mod, name, impl);
    if (!opts.skipUnknown) {
      fail(`pickle global '${qual}' is not allowed: only tensors, containers and plain values can be loaded, nothing is executed (to load it as an inert placeholder instead: --skip-unknown on difftune's commands, skipUnknown: true in code)`);
    }
    ctx.warn(`unsupported global '${qual}' was replaced by a placeholder`);
    return new Unrepresentable(qual);
  };
  const call = (callee: PyValue, args: PyValue, kwargs: PyValue | null): PyValue => {
    if (!Array.isArray(args)) fail(`arguments must be a tuple, got ${describe(args)}`);
    if (callee instanceof Unrepresentable) {
      const u = new Unrepresentable(callee.global);
      u.args = args as PyValue[];
      u.kwargs = kwargs;
      return u;
    }
    if (callee instanceof PyGlobal) {
      if (!callee.impl.call) fail(`global '${callee.qualname}' cannot be called`);
      if (kwargs !== null && !(kwargs instanceof Map && kwargs.size === 0)) {
        fail(`keyword arguments to '${callee.qualname}' are not supported`);
      }
      return callee.impl.call!(args as PyValue[], ctx);
    }
    return fail(`cannot call ${describe(callee)}`);
  };
  const setItem = (target: PyValue, key: PyValue, value: PyValue): void => {
    if (target instanceof Map) target.set(checkHashable(key, ctx), value);
    else if (target instanceof Unrepresentable) target.dictItems.set(key, value);
    else fail(`cannot set an item on ${describe(target)}`);
  };
  const appendTo = (target: PyValue, items: PyValue[]): void => {
    if (Array.isArray(target) && !Object.isFrozen(target)) {
      for (const it of items) target.push(it);
    } else if (target instanceof Unrepresentable) {
      for (const it of items) target.listItems.push(it);
    } else {
      fail(`cannot append to ${describe(target)}`);
    }
  };

  while (true) {
    opPos = pos;
    if (pos >= data.length) {
      op = -1;
      fail('truncated: pickle ended without STOP');
    }
    op = data[pos++];
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: { // FRAME: only a read-ahead hint; check it is plausible
        const n = u64();
        if (n > data.length - pos) fail(`frame of ${n} bytes runs past the end of the data`);
        break;
      }
      case 0x2e: { // STOP
        const value = pop();
        return { value, warnings, end: pos };
      }
      case 0x28: metastack.push(stack); stack = []; break; // MARK
      case 0x30: if (stack.length) stack.pop(); else popMark(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(readLong(u8())); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail(`negative LONG4 length ${n}`);
        stack.push(readLong(n));
        break;
      }
      case 0x47: { // BINFLOAT (big-endian)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x8c: stack.push(utf8.decode(bytes(u8()))); break; // SHORT_BINUNICODE
      case 0x58: stack.push(utf8.decode(bytes(u32()))); break; // BINUNICODE
      case 0x8d: stack.push(utf8.decode(bytes(u64()))); break; // BINUNICODE8
      case 0x55: stack.push(utf8.decode(bytes(u8()))); break; // SHORT_BINSTRING (Python 2 str)
      case 0x54: { // BINSTRING
        const n = i32();
        if (n < 0) fail(`negative BINSTRING length ${n}`);
        stack.push(utf8.decode(bytes(n)));
        break;
      }
      case 0x43: stack.push(bytes(u8())); break; // SHORT_BINBYTES
      case 0x42: stack.push(bytes(u32())); break; // BINBYTES
      case 0x8e: stack.push(bytes(u64())); break; // BINBYTES8
      case 0x96: stack.push(bytes(u64())); break; // BYTEARRAY8
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      // popMark() swaps `stack`, so it must run before `stack.push` is looked up.
      case 0x74: { const items = popMark(); stack.push(tuple(items)); break; } // TUPLE
      case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { // TUPLE3
        const c = pop(); const b = pop(); const a = pop();
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x6c: { const items = popMark(); stack.push(items); break; } // LIST
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) fail('odd number of items for a dict');
        const m = new Map<PyValue, PyValue>();
        for (let i = 0; i < items.length; i += 2) m.set(checkHashable(items[i], ctx), items[i + 1]);
        stack.push(m);
        break;
      }
      case 0x91: { // FROZENSET
        const s = new Set<PyValue>();
        for (const v of popMark()) s.add(checkHashable(v, ctx));
        stack.push(s);
        break;
      }
      case 0x61: { const v = pop(); appendTo(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendTo(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItem(top(), k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('odd number of items for SETITEMS');
        const target = top();
        for (let i = 0; i < items.length; i += 2) setItem(target, items[i], items[i + 1]);
        break;
      }
      case 0x90: { // ADDITEMS
        const items = popMark();
        const target = top();
        if (!(target instanceof Set)) fail(`cannot add items to ${describe(target)}`);
        for (const v of items) (target as Set<PyValue>).add(checkHashable(v, ctx));
        break;
      }
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`memo entry ${i} does not exist`);
        stack.push(memo.get(i) as PyValue);
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); const f = pop(); stack.push(call(f, args, null)); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); stack.push(call(cls, args, null)); break; } // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop(); const args = pop(); const cls = pop();
        stack.push(call(cls, args, kwargs));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const inst = top();
        if (inst instanceof Unrepresentable) {
          inst.state = state;
        } else if (typeof inst === 'object' && inst !== null) {
          attributes.set(inst, state);
        } else {
          fail(`cannot set state on ${describe(inst)}`);
        }
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('persistent id (external storage reference) is not supported here');
        stack.push(opts.persistentLoad!(pid, ctx));
        break;
      }
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}
