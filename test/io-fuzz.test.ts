// Seeded mutation fuzzing: every mutated input must either load (with
// self-consistent tensors) or fail with a CheckpointError; any other
// exception, or a hang, fails the test. Failures print seed and iteration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError, DTYPES, RawTensor, isRawTensor, itemSize } from '../src/torch/io/raw';
import { encodeSafetensors, parseSafetensors } from '../src/torch/io/safetensors';
import { PyValue, Unrepresentable, unpickle } from '../src/torch/io/pickle';
import { parseTorchCheckpoint } from '../src/torch/io/torch-pickle';
import { ZipArchive, encodeStoredZip } from '../src/torch/io/zip';
import { mulberry32 } from '../src/data/prng';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures', 'pt');

// Deterministic by default; DIFFTUNE_FUZZ_SEED / DIFFTUNE_FUZZ_SCALE allow longer local hunts.
const SEED_SHIFT = Number(process.env.DIFFTUNE_FUZZ_SEED ?? 0);
const SCALE = Number(process.env.DIFFTUNE_FUZZ_SCALE ?? 1);
const iterations = (n: number) => Math.max(1, Math.round(n * SCALE));

/** Seeded stream; DIFFTUNE_FUZZ_SEED shifts every seed for longer local runs. */
function rng(seed: number): () => number {
  return mulberry32((seed + SEED_SHIFT * 0x9e3779b9) >>> 0);
}

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)];

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x22, 0x2c, 0x5b, 0x5d, 0x7b, 0x7d, 0x2d, 0x30, 0x39, 0x2e, 0x28, 0x74, 0x52, 0x62];
const INTERESTING_NUMBERS = [0, 1, -1, 2, 3, 4, 7, 8, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, -8, 0.5, 1e-7];

/** Generic byte-level mutations. */
function mutateBytes(r: Rand, src: Uint8Array, focus?: [number, number]): Uint8Array {
  let b = Uint8Array.from(src);
  const rounds = 1 + int(r, 4);
  for (let k = 0; k < rounds; k++) {
    const [lo, hi] = focus && r() < 0.7 ? focus : [0, b.length];
    const at = lo + int(r, Math.max(1, hi - lo));
    switch (int(r, 7)) {
      case 0: if (b.length) b[at % b.length] ^= 1 << int(r, 8); break;
      case 1: if (b.length) b[at % b.length] = pick(r, INTERESTING_BYTES); break;
      case 2: if (b.length) b[at % b.length] = int(r, 256); break;
      case 3: b = b.slice(0, int(r, b.length + 1)); break; // truncate
      case 4: { // insert random bytes
        const ins = Uint8Array.from({ length: 1 + int(r, 8) }, () => (r() < 0.5 ? pick(r, INTERESTING_BYTES) : int(r, 256)));
        const p = Math.min(at, b.length);
        b = Uint8Array.from([...b.subarray(0, p), ...ins, ...b.subarray(p)]);
        break;
      }
      case 5: { // delete a span
        const p = Math.min(at, b.length);
        b = Uint8Array.from([...b.subarray(0, p), ...b.subarray(p + 1 + int(r, 8))]);
        break;
      }
      case 6: { // copy a span over another (duplicates structure)
        if (b.length < 4) break;
        const len = 1 + int(r, 16);
        const from = int(r, b.length);
        b.set(b.subarray(from, from + len).slice(0, Math.max(0, b.length - (at % b.length))), at % b.length);
        break;
      }
    }
  }
  return b;
}

function checkTensor(t: RawTensor, where: string): void {
  const n = t.shape.reduce((a, d) => a * d, 1);
  assert.equal(t.data.length, n * itemSize(t.dtype), `${where}: tensor byte length`);
}

/** Run one case; anything but success or CheckpointError is a finding. */
function expectSafe(label: string, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof CheckpointError) return false;
    assert.fail(`${label}: unexpected ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`);
  }
}

// ---- safetensors ----------------------------------------------------------

function baseSafetensors(): Uint8Array {
  const m = new Map<string, RawTensor>();
  DTYPES.forEach((d, i) => {
    const shape = i % 3 === 0 ? [2, 3] : i % 3 === 1 ? [4] : [];
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Uint8Array.from({ length: n * itemSize(d) }, (_, j) => (j * 13 + i) & (d === 'bool' ? 1 : 0xff));
    m.set(`layer.${i}.${d}`, { dtype: d, shape, data });
  });
  m.set('empty', { dtype: 'float32', shape: [0, 2], data: new Uint8Array(0) });
  return encodeSafetensors(m, { format: 'pt' });
}

/** Structure-aware mutation: edit one field of the JSON header, fix up or break the length. */
function mutateHeader(r: Rand, src: Uint8Array): Uint8Array {
  const len = Number(Buffer.from(src).readBigUInt64LE(0));
  const header = JSON.parse(Buffer.from(src.subarray(8, 8 + len)).toString('utf8')) as Record<string, Record<string, unknown>>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = pick(r, names);
  const e = header[name];
  const num = () => (r() < 0.5 ? pick(r, INTERESTING_NUMBERS) : int(r, 200));
  switch (int(r, 8)) {
    case 0: e.dtype = pick(r, ['F32', 'F64', 'BF16', 'U8', 'BOOL', 'I64', 'F8_E4M3', 'U64', '', 7, null]); break;
    case 1: e.shape = Array.from({ length: int(r, 4) }, num); break;
    case 2: e.data_offsets = [num(), num()]; break;
    case 3: (e.data_offsets as number[])[int(r, 2)] = num(); break;
    case 4: header[pick(r, names)].data_offsets = e.data_offsets; break; // overlap
    case 5: delete e[pick(r, ['dtype', 'shape', 'data_offsets'])]; break;
    case 6: header.__metadata__ = pick(r, [{ a: 1 }, [], 'x', { a: 'b' }]) as Record<string, unknown>; break;
    case 7: header[name] = pick(r, [[], 'x', 1, null, {}]) as Record<string, unknown>; break;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const data = src.subarray(8 + len);
  const out = Buffer.alloc(8 + json.length + data.length);
  const lenField = r() < 0.8 ? BigInt(json.length) : BigInt(json.length + int(r, 17) - 8);
  out.writeBigUInt64LE(lenField < 0n ? 0n : lenField, 0);
  json.copy(out, 8);
  out.set(data, 8 + json.length);
  return r() < 0.2 ? out.subarray(0, out.length - int(r, 16)) : out;
}

test('fuzz safetensors parser (seeded)', { timeout: 60_000 }, () => {
  const base = baseSafetensors();
  assert.equal(parseSafetensors(base).tensors.size, DTYPES.length + 1, 'base file is valid');
  const headerEnd = 8 + Number(Buffer.from(base).readBigUInt64LE(0));
  const r = rng(0x5afe7e45);
  let ok = 0;
  let rejected = 0;
  const N = iterations(20_000);
  for (let i = 0; i < N; i++) {
    const kind = int(r, 3);
    const buf = kind === 0 ? mutateBytes(r, base) : kind === 1 ? mutateBytes(r, base, [0, headerEnd]) : mutateHeader(r, base);
    const passed = expectSafe(`safetensors iteration ${i} (mutation ${kind})`, () => {
      const st = parseSafetensors(buf);
      for (const [k, t] of st.tensors) checkTensor(t, `iteration ${i} tensor ${k}`);
    });
    if (passed) ok++; else rejected++;
  }
  // Both outcomes must occur, or the fuzzer is not exercising anything.
  assert.ok(ok > N / 100 && rejected > N / 4, `ok=${ok} rejected=${rejected}`);
});

// ---- torch checkpoints and the unpickler ------------------------------------

function walkTensors(v: PyValue, where: string): void {
  const seen = new Set<unknown>();
  const stack: PyValue[] = [v];
  let budget = 100_000;
  while (stack.length && budget-- > 0) {
    const x = stack.pop() as PyValue;
    if (typeof x !== 'object' || x === null || seen.has(x)) continue;
    seen.add(x);
    if (isRawTensor(x)) checkTensor(x, where);
    else if (Array.isArray(x)) stack.push(...x);
    else if (x instanceof Map) for (const [k, val] of x) stack.push(k, val);
    else if (x instanceof Set) stack.push(...x);
    else if (x instanceof Unrepresentable) stack.push(...(x.args ?? []), x.state ?? null);
  }
}

const PT_FILES = ['state_dict.pt', 'train_ckpt.pt', 'module_params.pt', 'hostile_torch_save_system.pt'];

test('fuzz torch.save files: whole-file byte mutations', { timeout: 60_000 }, () => {
  const r = rng(0x70c4);
  const bases = PT_FILES.map((f) => new Uint8Array(fs.readFileSync(path.join(FIX, f))));
  let ok = 0;
  for (let i = 0, n = iterations(5000); i < n; i++) {
    const buf = mutateBytes(r, pick(r, bases));
    if (expectSafe(`pt iteration ${i}`, () => {
      walkTensors(parseTorchCheckpoint(buf, { skipUnknown: r() < 0.5 }).value, `pt iteration ${i}`);
    })) ok++;
  }
  assert.ok(ok > 0, 'some mutations (e.g. in padding) still load');
});

/** Unzip a torch.save file, mutate data.pkl (or a storage), re-zip with valid CRCs. */
test('fuzz torch.save files: pickle-level mutations behind valid zips', { timeout: 60_000 }, () => {
  const r = rng(0xd1ce);
  const bases = PT_FILES.map((f) => {
    const z = ZipArchive.fromBuffer(new Uint8Array(fs.readFileSync(path.join(FIX, f))), f);
    return [...z.entries.keys()].map((name) => ({ name, data: z.read(name) }));
  });
  let ok = 0;
  let rejected = 0;
  for (let i = 0, n = iterations(10_000); i < n; i++) {
    const entries = pick(r, bases).map((e) => ({ ...e }));
    const pkl = entries.find((e) => e.name.endsWith('/data.pkl'))!;
    if (r() < 0.85) {
      pkl.data = mutateBytes(r, pkl.data);
    } else {
      const victim = pick(r, entries);
      victim.data = victim.data.slice(0, int(r, victim.data.length + 1));
    }
    const buf = encodeStoredZip(entries);
    const passed = expectSafe(`pickle-in-zip iteration ${i}`, () => {
      walkTensors(parseTorchCheckpoint(buf, { skipUnknown: r() < 0.7, maxMaterializedBytes: 1 << 22 }).value, `iteration ${i}`);
    });
    if (passed) ok++; else rejected++;
  }
  assert.ok(ok > 20 * SCALE && rejected > 20 * SCALE, `ok=${ok} rejected=${rejected}`);
});

test('fuzz unpickler: CPython pickles mutated, and opcode soup', { timeout: 60_000 }, () => {
  const r = rng(0x91c1e);
  const bases = [2, 3, 4, 5].map((p) => new Uint8Array(fs.readFileSync(path.join(FIX, `values_p${p}.pkl`))));
  const OPS = [0x28, 0x2e, 0x30, 0x31, 0x32, 0x4a, 0x4b, 0x4d, 0x4e, 0x51, 0x52, 0x54, 0x55, 0x58, 0x61, 0x62, 0x63, 0x64,
    0x7d, 0x65, 0x68, 0x6a, 0x6c, 0x5d, 0x71, 0x72, 0x73, 0x74, 0x29, 0x75, 0x47, 0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x8b, 0x42, 0x43, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96];
  for (let i = 0, n = iterations(15_000); i < n; i++) {
    let buf: Uint8Array;
    if (i % 2 === 0) {
      buf = mutateBytes(r, pick(r, bases));
    } else {
      buf = Uint8Array.from({ length: 1 + int(r, 64) }, () => (r() < 0.6 ? pick(r, OPS) : int(r, r() < 0.5 ? 4 : 256)));
    }
    expectSafe(`unpickle iteration ${i}`, () => {
      walkTensors(unpickle(buf, { skipUnknown: r() < 0.5 }).value, `unpickle ${i}`);
    });
  }
});
