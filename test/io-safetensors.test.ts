import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CheckpointError, DTYPES, DType, RawTensor, itemSize, toNumbers,
} from '../src/torch/io/raw';
import {
  encodeSafetensors, parseSafetensors, readSafetensors, readSafetensorsHeader, writeSafetensors,
} from '../src/torch/io/safetensors';

const GOLDEN = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'dit-ref', 'model.safetensors');

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-st-'));
}

/** Deterministic bytes for a tensor (bool must hold 0/1). */
function makeTensor(dtype: DType, shape: number[], seed: number): RawTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n * itemSize(dtype));
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + seed * 7 + 3) & 0xff;
  if (dtype === 'bool') for (let i = 0; i < data.length; i++) data[i] &= 1;
  return { dtype, shape, data };
}

function headerOf(buf: Uint8Array): { len: number; json: string } {
  const len = Number(Buffer.from(buf).readBigUInt64LE(0));
  return { len, json: Buffer.from(buf.subarray(8, 8 + len)).toString('utf8') };
}

test('itemSize covers every dtype', () => {
  assert.deepEqual(DTYPES.map(itemSize), [4, 8, 2, 2, 8, 4, 2, 1, 1, 1]);
});

test('round trip: every dtype, scalar and empty shapes, metadata, header order', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'all.safetensors');
  const tensors = new Map<string, RawTensor>();
  DTYPES.forEach((d, i) => tensors.set(`t.${d}`, makeTensor(d, [2, 3], i)));
  tensors.set('scalar', makeTensor('float32', [], 99));
  tensors.set('empty', makeTensor('int64', [0, 4], 0));
  tensors.set('10', makeTensor('uint8', [5], 5)); // integer-like name must keep its place
  tensors.set('ünïcode name', makeTensor('float16', [1, 1, 2], 7));
  writeSafetensors(file, tensors, { format: 'pt', note: 'x' });

  assert.deepEqual(fs.readdirSync(dir), ['all.safetensors'], 'no temporary file left behind');
  const buf = fs.readFileSync(file);
  const { len, json } = headerOf(buf);
  assert.equal(len % 8, 0, 'header is padded to a multiple of 8');
  assert.match(json, /^\{"__metadata__":/);
  const header = JSON.parse(json) as Record<string, { data_offsets: [number, number] }>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  // Data offsets follow insertion order and are contiguous from 0.
  let expect = 0;
  for (const name of tensors.keys()) {
    const [b, e] = header[name].data_offsets;
    assert.equal(b, expect, `offset of ${name}`);
    expect = e;
  }
  assert.equal(buf.length, 8 + len + expect);
  assert.equal(names.length, tensors.size);
  assert.ok(json.indexOf('"t.float32"') < json.indexOf('"10"'), 'header keeps insertion order');

  const back = readSafetensors(file);
  assert.deepEqual(back.metadata, { format: 'pt', note: 'x' });
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  for (const [name, t] of tensors) {
    const r = back.tensors.get(name)!;
    assert.equal(r.dtype, t.dtype, name);
    assert.deepEqual(r.shape, t.shape, name);
    assert.deepEqual(Buffer.from(r.data), Buffer.from(t.data), name);
  }
  // The in-memory encoder and parser agree with the file path.
  assert.deepEqual(Buffer.from(encodeSafetensors(tensors, { format: 'pt', note: 'x' })), buf);
  const parsed = parseSafetensors(buf);
  assert.deepEqual([...parsed.tensors.keys()], [...tensors.keys()]);

  // Overwrite in place (rename replaces the old file atomically).
  writeSafetensors(file, { only: makeTensor('bool', [3], 1) });
  const again = readSafetensors(file);
  assert.deepEqual([...again.tensors.keys()], ['only']);
  assert.deepEqual(again.metadata, {});
  assert.deepEqual(toNumbers(again.tensors.get('only')!), [0, 1, 0]);
  fs.rmSync(dir, { recursive: true });
});

test('values decode exactly for float16/bfloat16/int64', () => {
  const f16 = { dtype: 'float16' as const, shape: [4], data: Uint8Array.from([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x7c]) };
  assert.deepEqual(toNumbers(f16), [1, -2, 2 ** -24, Infinity]);
  const bf16 = { dtype: 'bfloat16' as const, shape: [2], data: Uint8Array.from([0x80, 0x3f, 0x20, 0xc1]) };
  assert.deepEqual(toNumbers(bf16), [1, -10]);
  const i64 = new Uint8Array(16);
  new DataView(i64.buffer).setBigInt64(0, -5n, true);
  new DataView(i64.buffer).setBigInt64(8, 2n ** 40n, true);
  assert.deepEqual(toNumbers({ dtype: 'int64', shape: [2], data: i64 }), [-5, 2 ** 40]);
});

test('readSafetensors names option loads a subset, and rejects unknown names', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'sub.safetensors');
  writeSafetensors(file, { a: makeTensor('float32', [2], 1), b: makeTensor('int32', [3], 2), c: makeTensor('int8', [1], 3) });
  const sub = readSafetensors(file, { names: ['c', 'a'] });
  assert.deepEqual([...sub.tensors.keys()], ['a', 'c']);
  assert.throws(() => readSafetensors(file, { names: ['zzz'] }), (e: unknown) =>
    e instanceof CheckpointError && /tensor 'zzz' not found/.test(e.message) && e.message.includes(file));
  const h = readSafetensorsHeader(file);
  assert.deepEqual(h.tensors.get('b'), { dtype: 'int32', shape: [3], begin: 8, end: 20 });
  fs.rmSync(dir, { recursive: true });
});

test('positional reads past 4 GiB (sparse file, nothing big in memory)', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'sparse.safetensors');
  const far = 2 ** 32 + 24;
  const json = Buffer.from(JSON.stringify({ far: { dtype: 'F64', shape: [1], data_offsets: [far, far + 8] } }).padEnd(88, ' '));
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(head, 8);
  const value = Buffer.alloc(8);
  value.writeDoubleLE(Math.PI, 0);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, head, 0, head.length, 0);
    fs.writeSync(fd, value, 0, 8, head.length + far); // the gap stays a hole
  } finally {
    fs.closeSync(fd);
  }
  const st = readSafetensors(file);
  assert.deepEqual(toNumbers(st.tensors.get('far')!), [Math.PI]);
  fs.rmSync(dir, { recursive: true });
});

test('writer validates its input and leaves nothing behind on failure', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'bad.safetensors');
  const cases: [Record<string, RawTensor>, RegExp][] = [
    [{ a: { dtype: 'float32', shape: [3], data: new Uint8Array(8) } }, /tensor 'a': data has 8 bytes, expected 12/],
    [{ a: { dtype: 'float8' as DType, shape: [1], data: new Uint8Array(1) } }, /tensor 'a': unknown dtype "float8"/],
    [{ a: { dtype: 'uint8', shape: [-1], data: new Uint8Array(0) } }, /tensor 'a': shape \[-1\]/],
    [{ __metadata__: makeTensor('uint8', [1], 0) }, /reserved/],
  ];
  for (const [t, re] of cases) {
    assert.throws(() => writeSafetensors(file, t), (e: unknown) => e instanceof CheckpointError && re.test(e.message), String(re));
  }
  assert.throws(() => writeSafetensors(file, {}, { n: 3 as unknown as string }), /metadata field 'n' must be a string/);
  assert.deepEqual(fs.readdirSync(dir), []);
  fs.rmSync(dir, { recursive: true });
});

test('golden DiT model.safetensors: keys, shapes, dtypes, values', (t) => {
  if (!fs.existsSync(GOLDEN)) {
    t.skip(`golden file not present: ${GOLDEN}`);
    return;
  }
  const header = readSafetensorsHeader(GOLDEN);
  assert.equal(header.tensors.size, 32);
  assert.equal(header.metadata.format, 'pt');
  assert.deepEqual(header.tensors.get('pos_embed'), { dtype: 'float32', shape: [1, 16, 64], begin: 0, end: 4096 });
  assert.deepEqual(header.tensors.get('blocks.0.attn.qkv.weight')?.shape, [192, 64]);
  assert.deepEqual(header.tensors.get('final_layer.adaLN_modulation.1.weight')?.shape, [128, 64]);
  const st = readSafetensors(GOLDEN);
  let total = 0;
  for (const [, t] of st.tensors) {
    assert.equal(t.dtype, 'float32');
    total += t.data.length / 4;
  }
  assert.equal(total, 183200, 'stored value count from the README');
  // 2-D sin-cos pos_embed: token 0 has sin(0)=0 then cos(0)=1 in each half.
  const pos = toNumbers(st.tensors.get('pos_embed')!);
  assert.deepEqual(pos.slice(0, 16), new Array(16).fill(0));
  assert.deepEqual(pos.slice(16, 32), new Array(16).fill(1));
  // Re-encoding reproduces the file byte for byte (same order, padding, metadata).
  const again = encodeSafetensors(st.tensors, st.metadata);
  const orig = fs.readFileSync(GOLDEN);
  assert.equal(again.length, orig.length);
  assert.ok(Buffer.from(again).subarray(headerOf(orig).len + 8).equals(orig.subarray(headerOf(orig).len + 8)), 'data section identical');
});

// ---- hand-crafted bad files ---------------------------------------------

function craft(header: unknown, dataLen: number, opts: { lenOverride?: bigint; truncate?: number } = {}): Uint8Array {
  const json = header instanceof Uint8Array ? Buffer.from(header)
    : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const buf = Buffer.alloc(8 + json.length + dataLen);
  buf.writeBigUInt64LE(opts.lenOverride ?? BigInt(json.length), 0);
  json.copy(buf, 8);
  return opts.truncate ? buf.subarray(0, buf.length - opts.truncate) : buf;
}

const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

const BAD: [string, Uint8Array, RegExp][] = [
  ['tiny file', Uint8Array.from([1, 2, 3]), /at least 8/],
  ['header length past EOF', craft({ a: ok }, 8, { lenOverride: 1000n }), /header length 1000 runs past the end/],
  ['absurd header length', craft({ a: ok }, 8, { lenOverride: 1n << 60n }), /exceeds the \d+-byte limit/],
  ['not JSON', craft('{"a": nope}', 0), /not valid JSON/],
  ['JSON array', craft([1, 2], 0), /must be an object/],
  ['invalid UTF-8', craft(Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 0), /header is not valid UTF-8/],
  ['unknown dtype', craft({ w: { ...ok, dtype: 'F8_E4M3' } }, 8), /tensor 'w': unknown dtype "F8_E4M3"/],
  ['missing dtype', craft({ w: { shape: [2], data_offsets: [0, 8] } }, 8), /tensor 'w': unknown dtype undefined/],
  ['negative dim', craft({ w: { ...ok, shape: [-2] } }, 8), /tensor 'w': shape \[-2\] must be a list of non-negative integers/],
  ['fractional dim', craft({ w: { ...ok, shape: [1.5] } }, 8), /tensor 'w': shape/],
  ['shape not a list', craft({ w: { ...ok, shape: 'big' } }, 8), /tensor 'w': shape "big"/],
  ['offsets missing', craft({ w: { dtype: 'F32', shape: [2] } }, 8), /tensor 'w': data_offsets undefined must be \[begin, end\]/],
  ['offsets negative', craft({ w: { ...ok, data_offsets: [-8, 0] } }, 8), /tensor 'w': data_offsets \[-8,0\]/],
  ['begin > end', craft({ w: { ...ok, data_offsets: [8, 0] } }, 8), /tensor 'w': data_offsets \[8, 0\] have begin > end/],
  ['size mismatch', craft({ w: { ...ok, data_offsets: [0, 12] } }, 12), /tensor 'w': data_offsets \[0, 12\] span 12 bytes, expected 8 for F32 shape \[2\]/],
  ['past data section', craft({ w: { ...ok, data_offsets: [8, 16] } }, 8), /tensor 'w': data_offsets \[8, 16\] extend past the 8-byte data section/],
  ['overlap', craft({ a: ok, b: { dtype: 'I32', shape: [2], data_offsets: [4, 12] } }, 12), /tensor 'b' data_offsets \[4, 12\] overlap tensor 'a' \[0, 8\]/],
  ['truncated data', craft({ a: ok, b: { ...ok, data_offsets: [8, 16] } }, 16, { truncate: 3 }), /tensor 'b': data_offsets \[8, 16\] extend past the 13-byte data section/],
  ['bad metadata', craft({ __metadata__: { step: 5 }, a: ok }, 8), /__metadata__ field 'step' must be a string/],
  ['entry not an object', craft({ a: [1, 2] }, 0), /tensor 'a': expected an object/],
];

for (const [what, bytes, re] of BAD) {
  test(`bad safetensors: ${what}`, () => {
    const dir = tmpDir();
    const file = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(file, bytes);
    for (const run of [() => readSafetensors(file), () => parseSafetensors(bytes, { name: file })]) {
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
        assert.match(e.message, re);
        assert.ok(e.message.startsWith(`${file}: `), `message names the file: ${e.message}`);
        assert.equal(e.file, file);
        return true;
      });
    }
    fs.rmSync(dir, { recursive: true });
  });
}

test('missing file is a CheckpointError naming the path', () => {
  assert.throws(() => readSafetensors('/nonexistent/x.safetensors'), (e: unknown) =>
    e instanceof CheckpointError && e.message.startsWith('/nonexistent/x.safetensors: cannot open'));
});

test('trailing bytes after the last tensor are rejected, as the reference reader does', () => {
  const good = encodeSafetensors({ a: makeTensor('float32', [2, 3], 1) });
  assert.equal(parseSafetensors(good).tensors.size, 1);
  const extra = Buffer.concat([Buffer.from(good), Buffer.from('#!/bin/sh\n')]);
  assert.throws(() => parseSafetensors(extra, { name: 'extra.safetensors' }), (e: unknown) =>
    e instanceof CheckpointError && /^extra\.safetensors: 10 trailing bytes after the last tensor's data/.test(e.message));
  const empty = encodeSafetensors({});
  assert.throws(() => parseSafetensors(Buffer.concat([Buffer.from(empty), Buffer.alloc(4)])), /4 trailing bytes/);
});
