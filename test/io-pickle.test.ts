import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, RawTensor, isRawTensor, itemSize, toNumbers } from '../src/torch/io/raw';
import {
  PyGlobal, PyValue, Unrepresentable, isTuple, pyAttributes, unpickle,
} from '../src/torch/io/pickle';
import {
  flattenStateDict, parseTorchCheckpoint, pickStateDict, readTorchCheckpoint,
} from '../src/torch/io/torch-pickle';
import * as zlib from 'node:zlib';
import { ZipArchive, encodeStoredZip } from '../src/torch/io/zip';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'pt');

interface ExpectedTensor { dtype: string; shape: number[]; hex: string; values: (number | string)[] }
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const EXPECTED: any = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));

function fixture(name: string): string {
  return path.join(FIX, name);
}

function asMap(v: PyValue | undefined): Map<PyValue, PyValue> {
  assert.ok(v instanceof Map, `expected a Map, got ${String(v)}`);
  return v;
}

function checkTensor(t: PyValue | undefined, exp: ExpectedTensor, what: string): void {
  assert.ok(isRawTensor(t), `${what}: expected a tensor`);
  assert.equal(t.dtype, exp.dtype, `${what} dtype`);
  assert.deepEqual(t.shape, exp.shape, `${what} shape`);
  assert.equal(Buffer.from(t.data).toString('hex'), exp.hex, `${what} bytes`);
  if (t.dtype === 'int64') {
    const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const got = exp.values.map((_, i) => dv.getBigInt64(i * 8, true).toString());
    assert.deepEqual(got, exp.values, `${what} values`);
  } else {
    assert.deepEqual(toNumbers(t), exp.values, `${what} values`);
  }
}

function checkStateDict(sd: Map<PyValue, PyValue> | Map<string, RawTensor>, exp: Record<string, ExpectedTensor>, what: string): void {
  assert.deepEqual([...sd.keys()], Object.keys(exp), `${what} keys`);
  for (const [k, e] of Object.entries(exp)) checkTensor((sd as Map<PyValue, PyValue>).get(k), e, `${what}.${k}`);
}

function throwsCheckpoint(fn: () => unknown, re: RegExp, msg?: string): CheckpointError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CheckpointError, `${msg ?? re}: expected CheckpointError, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.match(caught.message, re, msg);
  return caught;
}

// ---- plain pickles from CPython, protocols 2-5 ---------------------------

for (const proto of [2, 3, 4, 5]) {
  test(`CPython protocol ${proto} pickle of plain values`, () => {
    const bytes = fs.readFileSync(fixture(`values_p${proto}.pkl`));
    const { value, warnings } = unpickle(bytes, { file: 'values' });
    assert.deepEqual(warnings, []);
    const m = asMap(value);
    assert.deepEqual([...m.keys()].slice(0, 5), ['none', 't', 'f', 'small', 'i2'], 'dict order kept');
    assert.equal(m.get('none'), null);
    assert.equal(m.get('t'), true);
    assert.equal(m.get('f'), false);
    assert.equal(m.get('small'), 1);
    assert.equal(m.get('i2'), 300);
    assert.equal(m.get('neg'), -5);
    assert.equal(m.get('i4'), 70000);
    assert.equal(m.get('big'), 2 ** 40);
    assert.equal(m.get('huge'), 2n ** 70n);
    assert.equal(m.get('nhuge'), -(2n ** 70n));
    assert.equal(m.get('float'), 1.5);
    assert.equal(m.get('inf'), Infinity);
    assert.ok(Object.is(m.get('negzero'), -0));
    assert.ok(Number.isNaN(m.get('nan')));
    assert.equal(m.get('str'), 'h\u00e9llo \u2713');
    assert.deepEqual(m.get('bytes'), Uint8Array.from([0, 1, 255]));
    assert.deepEqual(m.get('list'), [1, [2, 3]]);
    assert.ok(!isTuple(m.get('list')));
    for (const [k, v] of [['tuple', [1, 'a']], ['empty_tuple', []], ['t3', [1, 2, 3]], ['t4', [1, 2, 3, 4]]] as const) {
      assert.ok(isTuple(m.get(k)), `${k} is a tuple`);
      assert.deepEqual([...(m.get(k) as PyValue[])], v);
    }
    assert.deepEqual(m.get('set'), new Set([1, 2]));
    assert.deepEqual(m.get('frozenset'), new Set([3]));
    const od = asMap(m.get('od'));
    assert.deepEqual([...od], [['b', 1], ['a', 2]]);
    assert.deepEqual([...asMap(m.get('intkeys'))], [[1, 'x'], [2, 'y']]);
    assert.deepEqual(m.get('shared'), [7, 8]);
    assert.equal(m.get('shared'), m.get('shared2'), 'memo keeps identity');
    assert.equal(m.get('long_str'), 'x'.repeat(300));
    assert.deepEqual(m.get('long_list'), Array.from({ length: 1200 }, (_, i) => i));
    // The torch reader accepts a bare pickle too, with the same result.
    const viaTorch = readTorchCheckpoint(fixture(`values_p${proto}.pkl`));
    assert.deepEqual([...asMap(viaTorch.value).keys()], [...m.keys()]);
  });
}

// ---- torch.save fixtures -------------------------------------------------

test('torch.save state_dict: all dtypes, non-contiguous, expanded and shared-storage tensors', () => {
  const { value, warnings } = readTorchCheckpoint(fixture('state_dict.pt'));
  assert.deepEqual(warnings, []);
  const exp = EXPECTED['state_dict.pt'].tensors as Record<string, ExpectedTensor>;
  checkStateDict(asMap(value), exp, 'state_dict');
  const m = asMap(value);
  // Shared storage: distinct, independent copies.
  const [a, b] = EXPECTED['state_dict.pt'].shared_storage as string[];
  const ta = m.get(a) as RawTensor;
  const tb = m.get(b) as RawTensor;
  assert.deepEqual(toNumbers(ta), [4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(toNumbers(tb), [1, 5, 9]);
  assert.notEqual(ta.data.buffer, tb.data.buffer);
  // Every tensor holds exactly numel*itemsize bytes.
  for (const [k, t] of flattenStateDict(value)) {
    assert.equal(t.data.length, t.shape.reduce((x, y) => x * y, 1) * itemSize(t.dtype), k);
  }
  assert.deepEqual(pickStateDict(value), flattenStateDict(value));
});

test('torch.save training checkpoint {model, ema, opt, args}', () => {
  const file = fixture('train_ckpt.pt');
  const err = throwsCheckpoint(() => readTorchCheckpoint(file), /pickle global 'argparse\.Namespace' is not allowed/);
  assert.ok(err.message.startsWith(file), 'names the file');
  assert.equal(err.file, file);

  const { value, warnings } = readTorchCheckpoint(file, { skipUnknown: true });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /argparse\.Namespace/);
  const exp = EXPECTED['train_ckpt.pt'];
  const top = asMap(value);
  assert.deepEqual([...top.keys()], ['model', 'ema', 'opt', 'args']);
  checkStateDict(asMap(top.get('model')), exp.model, 'model');
  checkStateDict(asMap(top.get('ema')), exp.ema, 'ema');

  const opt = asMap(top.get('opt'));
  const state = asMap(opt.get('state'));
  assert.deepEqual([...state.keys()], exp.opt_state_keys, 'optimizer state keys are ints');
  const s0 = asMap(state.get(0));
  for (const [k, e] of Object.entries(exp.opt_state0 as Record<string, ExpectedTensor>)) checkTensor(s0.get(k), e, `opt.state.0.${k}`);
  const groups = opt.get('param_groups') as PyValue[];
  assert.equal(groups.length, exp.param_groups.length);
  const g0 = asMap(groups[0]);
  for (const [k, v] of Object.entries(exp.param_groups[0] as Record<string, unknown>)) {
    const got = g0.get(k);
    assert.deepEqual(Array.isArray(got) ? [...got] : got, v, `param_groups[0].${k}`);
  }
  assert.ok(isTuple(g0.get('betas')));

  const args = top.get('args');
  assert.ok(args instanceof Unrepresentable);
  assert.equal(args.global, 'argparse.Namespace');
  const attrs = asMap(args.state);
  for (const [k, v] of Object.entries(exp.args as Record<string, unknown>)) assert.deepEqual(attrs.get(k), v, `args.${k}`);

  // EMA is preferred by default, as DiT's sampler does.
  checkStateDict(pickStateDict(value), exp.ema, 'picked');
  checkStateDict(pickStateDict(value, 'model'), exp.model, 'picked model');
  throwsCheckpoint(() => pickStateDict(value, 'nope'), /no 'nope' entry \(top-level keys: model, ema, opt, args\)/);
  throwsCheckpoint(() => pickStateDict(value, 'args'), /entry 'args' holds no tensors/);
  const flat = flattenStateDict(value);
  assert.ok(flat.has('model.0.weight') && flat.has('ema.2.bias') && flat.has('opt.state.0.exp_avg'));
});

test('nn.Module state_dict(keep_vars=True): Parameters, buffers and _metadata', () => {
  const { value } = readTorchCheckpoint(fixture('module_params.pt'));
  const exp = EXPECTED['module_params.pt'];
  checkStateDict(asMap(value), exp.tensors, 'module');
  const meta = asMap(asMap(pyAttributes(value as object)).get('_metadata'));
  for (const [k, v] of Object.entries(exp.metadata as Record<string, Record<string, number>>)) {
    assert.deepEqual(Object.fromEntries(asMap(meta.get(k))), v, `_metadata[${k}]`);
  }
});

test('legacy (pre-1.6) torch.save files are refused with advice', () => {
  throwsCheckpoint(() => readTorchCheckpoint(fixture('legacy.pt')), /legacy \(pre-1\.6, non-zip\) torch\.save format is not supported; re-save it with torch >= 1\.6/);
});

test('hostile pickles are refused, naming the global, and nothing runs', () => {
  const hostile = EXPECTED.hostile as Record<string, { global: string; marker: string }>;
  const markers = new Set(Object.values(hostile).map((h) => h.marker));
  for (const m of markers) fs.rmSync(m, { force: true });
  assert.ok(Object.keys(hostile).length >= 5);
  for (const [name, h] of Object.entries(hostile)) {
    const file = fixture(name);
    const re = new RegExp(`pickle global '${h.global.replace(/\./g, '\\.')}' is not allowed`);
    throwsCheckpoint(() => readTorchCheckpoint(file), re, name);
    // Placeholder mode loads it inertly and says what it skipped.
    const { value, warnings } = readTorchCheckpoint(file, { skipUnknown: true });
    assert.ok(warnings.some((w) => w.includes(`'${h.global}'`)), `${name} warning`);
    const found: Unrepresentable[] = [];
    const walk = (v: PyValue): void => {
      if (v instanceof Unrepresentable) found.push(v);
      else if (v instanceof Map) v.forEach(walk);
    };
    walk(value);
    assert.equal(found.length, 1, name);
    assert.equal(found[0].global, h.global);
    assert.equal(typeof found[0].args?.[0], 'string');
  }
  for (const m of markers) assert.ok(!fs.existsSync(m), `payload must not have run (${m})`);
});

// ---- hand-built pickles ----------------------------------------------------

type Part = number | number[] | Uint8Array;
function pk(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else out.push(...p);
  }
  return Uint8Array.from(out);
}
const enc = (s: string) => [...Buffer.from(s, 'utf8')];
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const P = {
  proto: [0x80, 2], stop: 0x2e, mark: 0x28, none: 0x4e, tuple: 0x74, reduce: 0x52, build: 0x62,
  newobj: 0x81, emptyDict: 0x7d, emptyList: 0x5d, emptyTuple: 0x29, setitem: 0x73, setitems: 0x75,
  append: 0x61, binpersid: 0x51, newfalse: 0x89,
  str: (s: string) => [0x58, ...u32(Buffer.byteLength(s)), ...enc(s)],
  int: (n: number) => [0x4a, ...u32(n)],
  global: (mod: string, name: string) => [0x63, ...enc(mod), 10, ...enc(name), 10],
  put: (i: number) => [0x71, i],
  get: (i: number) => [0x68, i],
};
const intTuple = (xs: number[]) => [P.mark, ...xs.flatMap(P.int), P.tuple];

/** _rebuild_tensor_v2(storage(key), offset, size, stride, False, OrderedDict()) */
function tensorOps(key: string, storageType: string, numel: number, offset: number, size: number[], stride: number[]): number[] {
  return [
    ...P.global('torch._utils', '_rebuild_tensor_v2'), P.mark,
    P.mark, ...P.str('storage'), ...P.global('torch', storageType), ...P.str(key), ...P.str('cpu'), ...P.int(numel), P.tuple, P.binpersid,
    ...P.int(offset), ...intTuple(size), ...intTuple(stride), P.newfalse,
    ...P.global('collections', 'OrderedDict'), P.emptyTuple, P.reduce,
    P.tuple, P.reduce,
  ];
}

function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, extra: { name: string; data: Uint8Array }[] = []): Uint8Array {
  return encodeStoredZip([
    { name: 'archive/data.pkl', data: pkl },
    ...Object.entries(storages).map(([k, d]) => ({ name: `archive/data/${k}`, data: d })),
    ...extra,
  ]);
}

const f32 = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);

test('hand-built torch archive: views, parameters, devices, dtypes', () => {
  const pkl = pk(P.proto, P.emptyDict, P.mark,
    ...P.str('t'), ...tensorOps('0', 'FloatStorage', 6, 0, [2, 3], [3, 1]),
    ...P.str('tt'), ...tensorOps('0', 'FloatStorage', 6, 0, [3, 2], [1, 3]),
    ...P.str('p'), ...P.global('torch._utils', '_rebuild_parameter_with_state'), P.mark,
    ...tensorOps('0', 'FloatStorage', 6, 1, [2], [2]), 0x88, ...P.global('collections', 'OrderedDict'), P.emptyTuple, P.reduce,
    P.emptyDict, P.tuple, P.reduce,
    ...P.str('dev'), ...P.global('torch', 'device'), ...P.str('cuda'), 0x4b, 1, 0x86, P.reduce,
    ...P.str('dt'), ...P.global('torch', 'bfloat16'),
    P.setitems, P.stop);
  const zip = torchZip(pkl, { 0: f32([0, 1, 2, 3, 4, 5]) }, [{ name: 'archive/byteorder', data: Buffer.from('little') }]);
  const { value } = parseTorchCheckpoint(zip);
  const m = asMap(value);
  assert.deepEqual(toNumbers(m.get('t') as RawTensor), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(toNumbers(m.get('tt') as RawTensor), [0, 3, 1, 4, 2, 5]);
  assert.deepEqual((m.get('tt') as RawTensor).shape, [3, 2]);
  assert.deepEqual(toNumbers(m.get('p') as RawTensor), [1, 3]);
  assert.equal(m.get('dev'), 'cuda:1');
  const dt = m.get('dt');
  assert.ok(dt instanceof PyGlobal && dt.qualname === 'torch.bfloat16');
});

test('hand-built torch archives: each defect is a CheckpointError naming it', () => {
  const one = (ops: number[]) => pk(P.proto, ...ops, P.stop);
  const good = f32([1, 2, 3, 4]);
  const cases: [string, Uint8Array, RegExp][] = [
    ['big-endian', torchZip(one(tensorOps('0', 'FloatStorage', 4, 0, [4], [1])), { 0: good }, [{ name: 'archive/byteorder', data: Buffer.from('big') }]),
      /archive\/byteorder says 'big': big-endian checkpoints are not supported/],
    ['odd byteorder', torchZip(one([P.none]), {}, [{ name: 'archive/byteorder', data: Buffer.from('middle') }]), /expected 'little', got "middle"/],
    ['missing storage', torchZip(one(tensorOps('7', 'FloatStorage', 4, 0, [4], [1])), { 0: good }),
      /storage '7': entry 'archive\/data\/7' is missing/],
    ['storage size', torchZip(one(tensorOps('0', 'FloatStorage', 5, 0, [4], [1])), { 0: good }),
      /storage '0': entry 'archive\/data\/0' has 16 bytes, expected 20 \(5 x float32\)/],
    ['view past storage', torchZip(one(tensorOps('0', 'FloatStorage', 4, 2, [3], [1])), { 0: good }),
      /reaches element 4 of storage '0' which has 4/],
    ['strided past storage', torchZip(one(tensorOps('0', 'FloatStorage', 4, 0, [2, 2], [3, 1])), { 0: good }),
      /reaches element 4 of storage '0'/],
    ['stride rank', torchZip(one(tensorOps('0', 'FloatStorage', 4, 0, [2, 2], [1])), { 0: good }), /stride must be 2 non-negative integers/],
    ['unknown storage type', torchZip(one(tensorOps('0', 'ComplexFloatStorage', 2, 0, [2], [1])), { 0: good }),
      /pickle global 'torch\.ComplexFloatStorage' is not allowed/],
    ['storage key traversal', torchZip(one(tensorOps('../x', 'FloatStorage', 4, 0, [4], [1])), { 0: good }), /invalid storage key/],
    ['storage dtype clash', torchZip(one([...tensorOps('0', 'FloatStorage', 4, 0, [4], [1]), ...tensorOps('0', 'IntStorage', 4, 0, [4], [1]), 0x86]), { 0: good }),
      /storage '0' is used as float32\[4\] and as int32\[4\]/],
    ['bad persistent id', torchZip(one([...P.str('x'), P.binpersid]), {}), /persistent id must be \('storage'/],
    ['rebuild on non-storage', torchZip(one([...P.global('torch._utils', '_rebuild_tensor_v2'), P.mark, P.none, ...P.int(0), ...intTuple([1]), ...intTuple([1]), P.newfalse, P.none, P.tuple, P.reduce]), {}),
      /tensor storage must be a torch storage, got None/],
    ['parameter of non-tensor', torchZip(one([...P.global('torch._utils', '_rebuild_parameter'), P.mark, P.none, P.newfalse, P.none, P.tuple, P.reduce]), {}),
      /expected \(tensor, requires_grad, hooks\)/],
    ['no data.pkl', encodeStoredZip([{ name: 'archive/other', data: new Uint8Array(1) }]), /no '<archive>\/data\.pkl' entry/],
    ['two data.pkl', encodeStoredZip([{ name: 'a/data.pkl', data: one([P.none]) }, { name: 'b/data.pkl', data: one([P.none]) }]), /several data\.pkl/],
    ['not a checkpoint', Buffer.from('hello world, not a pickle'), /neither a zip archive nor a protocol 2\+ pickle/],
  ];
  for (const [what, bytes, re] of cases) {
    const e = throwsCheckpoint(() => parseTorchCheckpoint(bytes, { name: `case.${what}` }), re, what);
    assert.ok(e.message.startsWith(`case.${what}: `), `${what}: message names the file`);
  }
  // Expanded views copy more than the file holds; the budget stops amplification.
  const expanded = torchZip(one(tensorOps('0', 'FloatStorage', 1, 0, [1000, 1000], [0, 0])), { 0: f32([1]) });
  throwsCheckpoint(() => parseTorchCheckpoint(expanded, { maxMaterializedBytes: 1 << 20 }), /maxMaterializedBytes/);
  const small = parseTorchCheckpoint(torchZip(one(tensorOps('0', 'FloatStorage', 1, 0, [2, 3], [0, 0])), { 0: f32([7]) }));
  assert.deepEqual(toNumbers(small.value as RawTensor), [7, 7, 7, 7, 7, 7]);
});

/**
 * A zip written the way big archives are: every size/offset field saturated
 * (0xFFFFFFFF) with the real values in zip64 extra fields, plus zip64 end
 * records; entries optionally deflated.
 */
function zip64Archive(entries: { name: string; data: Uint8Array; deflate?: boolean }[]): Uint8Array {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const body = e.deflate ? zlib.deflateRawSync(e.data) : Buffer.from(e.data);
    const crc = zlib.crc32(e.data) >>> 0;
    const local = Buffer.alloc(30 + name.length + 20);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt16LE(e.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(0xffffffff, 18);
    local.writeUInt32LE(0xffffffff, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(20, 28);
    name.copy(local, 30);
    local.writeUInt16LE(1, 30 + name.length);
    local.writeUInt16LE(16, 32 + name.length);
    local.writeBigUInt64LE(BigInt(e.data.length), 34 + name.length);
    local.writeBigUInt64LE(BigInt(body.length), 42 + name.length);
    const c = Buffer.alloc(46 + name.length + 28);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(45, 4);
    c.writeUInt16LE(45, 6);
    c.writeUInt16LE(e.deflate ? 8 : 0, 10);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(0xffffffff, 20);
    c.writeUInt32LE(0xffffffff, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(28, 30);
    c.writeUInt32LE(0xffffffff, 42);
    name.copy(c, 46);
    let x = 46 + name.length;
    c.writeUInt16LE(1, x);
    c.writeUInt16LE(24, x + 2);
    c.writeBigUInt64LE(BigInt(e.data.length), x + 4);
    c.writeBigUInt64LE(BigInt(body.length), x + 12);
    c.writeBigUInt64LE(BigInt(offset), x + 20);
    parts.push(local, body);
    central.push(c);
    offset += local.length + body.length;
  }
  const cd = Buffer.concat(central);
  const z64 = Buffer.alloc(56);
  z64.writeUInt32LE(0x06064b50, 0);
  z64.writeBigUInt64LE(44n, 4);
  z64.writeBigUInt64LE(BigInt(entries.length), 24);
  z64.writeBigUInt64LE(BigInt(entries.length), 32);
  z64.writeBigUInt64LE(BigInt(cd.length), 40);
  z64.writeBigUInt64LE(BigInt(offset), 48);
  const loc = Buffer.alloc(20);
  loc.writeUInt32LE(0x07064b50, 0);
  loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
  loc.writeUInt32LE(1, 16);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(0xffff, 8);
  eocd.writeUInt16LE(0xffff, 10);
  eocd.writeUInt32LE(0xffffffff, 12);
  eocd.writeUInt32LE(0xffffffff, 16);
  return Buffer.concat([...parts, cd, z64, loc, eocd]);
}

test('zip reader: zip64 fields, deflate, and a torch archive inside it', () => {
  const pkl = pk(P.proto, ...tensorOps('0', 'FloatStorage', 3, 0, [3], [1]), P.stop);
  const buf = zip64Archive([
    { name: 'ck/data.pkl', data: pkl, deflate: true },
    { name: 'ck/data/0', data: f32([1.5, -2, 3]) },
    { name: 'ck/byteorder', data: Buffer.from('little'), deflate: true },
  ]);
  const z = ZipArchive.fromBuffer(buf, 'z64');
  assert.deepEqual([...z.entries.keys()], ['ck/data.pkl', 'ck/data/0', 'ck/byteorder']);
  assert.equal(z.entries.get('ck/data.pkl')!.method, 8);
  assert.deepEqual(Buffer.from(z.read('ck/data.pkl')), Buffer.from(pkl));
  assert.deepEqual(toNumbers(parseTorchCheckpoint(buf).value as RawTensor), [1.5, -2, 3]);
  // Broken zip64 pointers are reported, not followed.
  const bad = Buffer.from(buf);
  bad.writeBigUInt64LE(BigInt(bad.length), bad.length - 22 - 20 + 8);
  throwsCheckpoint(() => ZipArchive.fromBuffer(bad, 'z64bad'), /zip64 end record offset \d+ is out of range/);
  const corrupt = Buffer.from(buf);
  corrupt[30 + 'ck/data.pkl'.length + 20 + 3] ^= 0xff; // inside the deflate stream
  throwsCheckpoint(() => parseTorchCheckpoint(corrupt), /deflate data is corrupt|CRC-32 mismatch|inflated to/);
});

test('corrupt zip data is caught by the CRC check', () => {
  const bytes = Buffer.from(fs.readFileSync(fixture('state_dict.pt')));
  const at = bytes.indexOf(Buffer.from('_rebuild_tensor_v2'));
  bytes[at] ^= 0x20;
  throwsCheckpoint(() => parseTorchCheckpoint(bytes), /CRC-32 mismatch/);
});

test('unpickle: allow-list, placeholders and malformed input', () => {
  const evil = pk(P.proto, ...P.global('os', 'system'), ...P.str('echo hi'), 0x85, P.reduce, P.stop);
  throwsCheckpoint(() => unpickle(evil, { file: 'evil.pkl' }), /^evil\.pkl: pickle: pickle global 'os\.system' is not allowed.*opcode GLOBAL at byte 2/);
  // __builtin__ (protocol 2 spelling) is reported under its Python 3 name.
  throwsCheckpoint(() => unpickle(pk(P.proto, ...P.global('__builtin__', 'eval'), P.stop)), /'builtins\.eval'/);
  throwsCheckpoint(() => unpickle(pk(P.proto, ...P.str('numpy.core.multiarray'), ...P.str('_reconstruct'), 0x93, P.stop)),
    /'numpy\.core\.multiarray\._reconstruct' is not allowed/);

  // skipUnknown: REDUCE / NEWOBJ / BUILD / SETITEM / APPEND on placeholders stay placeholders.
  const obj = pk(P.proto, P.mark,
    ...P.global('argparse', 'Namespace'), P.emptyTuple, P.newobj, P.emptyDict, ...P.str('lr'), ...P.int(3), P.setitem, P.build,
    ...P.global('os', 'system'), ...P.str('rm -rf /'), 0x85, P.reduce,
    ...P.global('easydict', 'EasyDict'), P.emptyTuple, P.reduce, ...P.str('k'), P.none, P.setitem,
    ...P.global('mylist', 'L'), P.emptyTuple, P.reduce, ...P.int(1), P.append,
    ...P.global('argparse', 'Namespace'),
    P.tuple, P.stop);
  throwsCheckpoint(() => unpickle(obj), /'argparse\.Namespace' is not allowed/);
  const { value, warnings } = unpickle(obj, { skipUnknown: true });
  assert.deepEqual(warnings.map((w) => w.match(/'([^']+)'/)?.[1]), ['argparse.Namespace', 'os.system', 'easydict.EasyDict', 'mylist.L']);
  const [ns, sys, ed, ml, bare] = value as Unrepresentable[];
  assert.ok([ns, sys, ed, ml, bare].every((u) => u instanceof Unrepresentable));
  assert.deepEqual(ns.state, new Map([['lr', 3]]));
  assert.deepEqual(sys.args, ['rm -rf /']);
  assert.deepEqual(ed.dictItems, new Map([['k', null]]));
  assert.deepEqual(ml.listItems, [1]);
  assert.equal(bare.args, null);

  const bad: [string, Uint8Array, RegExp][] = [
    ['no STOP', pk(P.proto, P.none), /ended without STOP/],
    ['empty', pk(), /ended without STOP/],
    ['string longer than input', pk(P.proto, 0x58, ...u32(0x7fffffff), 0x41, P.stop), /truncated: needs 2147483647 more bytes/],
    ['BINBYTES8 huge', pk(P.proto, 0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, P.stop), /truncated/],
    ['LONG4 huge', pk(P.proto, 0x8b, ...u32(100000), P.stop), /integer of 100000 bytes exceeds/],
    ['LONG4 negative', pk(P.proto, 0x8b, 0xff, 0xff, 0xff, 0xff, P.stop), /negative LONG4 length/],
    ['unknown opcode', pk(P.proto, 0xff), /unsupported pickle opcode 0xff/],
    ['text opcode', pk(P.proto, 0x49, ...enc('1\n'), P.stop), /unsupported pickle opcode 0x49/],
    ['bad protocol', pk(0x80, 9), /unsupported pickle protocol 9/],
    ['memo miss', pk(P.proto, ...P.get(3), P.stop), /memo entry 3 does not exist/],
    ['underflow', pk(P.proto, P.reduce), /stack underflow/],
    ['no mark', pk(P.proto, P.tuple), /no MARK/],
    ['append to tuple', pk(P.proto, P.emptyTuple, P.none, P.append, P.stop), /cannot append to tuple/],
    ['setitem on list', pk(P.proto, P.emptyList, P.none, P.none, P.setitem, P.stop), /cannot set an item on list/],
    ['unhashable key', pk(P.proto, P.emptyDict, P.emptyList, P.none, P.setitem, P.stop), /unhashable list/],
    ['call a string', pk(P.proto, ...P.str('x'), P.emptyTuple, P.reduce, P.stop), /cannot call string/],
    ['args not tuple', pk(P.proto, ...P.global('collections', 'OrderedDict'), P.none, P.reduce, P.stop), /arguments must be a tuple, got None/],
    ['call a marker', pk(P.proto, ...P.global('torch', 'FloatStorage'), P.emptyTuple, P.reduce, P.stop), /cannot call|not allowed/],
    ['BUILD on int', pk(P.proto, ...P.int(1), P.none, P.build, P.stop), /cannot set state on number/],
    ['persid without loader', pk(P.proto, P.none, P.binpersid, P.stop), /persistent id .* not supported/],
    ['GLOBAL without newline', pk(P.proto, 0x63, ...enc('os')), /missing newline/],
    ['STACK_GLOBAL non-strings', pk(P.proto, P.none, P.none, 0x93, P.stop), /STACK_GLOBAL needs two strings/],
    ['FRAME past end', pk(0x80, 4, 0x95, 100, 0, 0, 0, 0, 0, 0, 0, P.none, P.stop), /frame of 100 bytes/],
    ['odd SETITEMS', pk(P.proto, P.emptyDict, P.mark, P.none, P.setitems, P.stop), /odd number of items/],
  ];
  for (const [what, bytes, re] of bad) throwsCheckpoint(() => unpickle(bytes, { file: 'f.pkl' }), re, what);
});

test('flattenStateDict: nesting, lists, prefixes, cycles', () => {
  const t: RawTensor = { dtype: 'uint8', shape: [1], data: Uint8Array.of(1) };
  const cyc: PyValue[] = [t];
  cyc.push(cyc);
  const v = new Map<PyValue, PyValue>([
    ['a', new Map<PyValue, PyValue>([['b', t], [3, t], ['skip', 'text']])],
    ['l', [t, null, t]],
    ['c', cyc],
  ]);
  assert.deepEqual([...flattenStateDict(v, 'm').keys()], ['m.a.b', 'm.a.3', 'm.l.0', 'm.l.2', 'm.c.0']);
  assert.deepEqual([...flattenStateDict(v).keys()][0], 'a.b');
});

test('a deflated storage that would unpack to more than the file may hold is refused before inflating', () => {
  // 16 MiB of zeros deflate to ~16 KB: a tiny file whose pickle and zip both declare the big size.
  const n = 4 << 20;
  const pkl = pk(P.proto, ...tensorOps('0', 'FloatStorage', n, 0, [1], [1]), P.stop);
  const bomb = zip64Archive([
    { name: 'ck/data.pkl', data: pkl },
    { name: 'ck/data/0', data: new Uint8Array(4 * n), deflate: true },
  ]);
  assert.ok(bomb.length < 100_000, `${bomb.length} bytes`);
  throwsCheckpoint(() => parseTorchCheckpoint(bomb, { maxMaterializedBytes: 1 << 20, name: 'bomb.pt' }),
    /bomb\.pt: .*entry 'ck\/data\/0' would inflate to 16777216 bytes, more than this \d+-byte archive may unpack to/);
  // Within the limit (the default: 4 x file size + 64 MiB) the same archive loads.
  assert.equal((parseTorchCheckpoint(bomb).value as RawTensor).shape[0], 1);
});
