// safetensors reader/writer: 8-byte LE header length, JSON header, raw data.
// Every header field is validated before any tensor byte is trusted, because
// checkpoints come from the internet.
import * as fs from 'node:fs';
import {
  ByteSource, CheckpointError, DType, RawTensor, bufferSource, checkedNumel, isDType, itemSize,
  openFileSource,
} from './raw';

/** safetensors dtype codes we support, and the inverse mapping. */
const CODE_TO_DTYPE: Record<string, DType> = {
  F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16',
  I64: 'int64', I32: 'int32', I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};
const DTYPE_TO_CODE: Record<DType, string> = {
  float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16',
  int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

/** Same cap as the reference implementation: real headers are far smaller. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** In data-offset order (for files this library writes, also header order). */
  tensors: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
  /** Length of the data section. */
  dataLength: number;
}

export interface SafetensorsFile {
  tensors: Map<string, RawTensor>;
  metadata: Record<string, string>;
}

export interface ReadSafetensorsOptions {
  /** Load only these tensors (each must exist). Default: all. */
  names?: string[];
}

export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const src = openFileSource(path);
  try {
    return parseHeaderFrom(src);
  } finally {
    src.close();
  }
}

export function readSafetensors(path: string, opts: ReadSafetensorsOptions = {}): SafetensorsFile {
  const src = openFileSource(path);
  try {
    return readAll(src, opts);
  } finally {
    src.close();
  }
}

/** In-memory variant (tests, fuzzing, network buffers). */
export function parseSafetensors(buf: Uint8Array, opts: ReadSafetensorsOptions & { name?: string } = {}): SafetensorsFile {
  return readAll(bufferSource(buf, opts.name ?? '<safetensors buffer>'), opts);
}

function readAll(src: ByteSource, opts: ReadSafetensorsOptions): SafetensorsFile {
  const tensors = new Map<string, RawTensor>();
  const metadata = eachTensor(src, opts, (name, t) => tensors.set(name, t));
  return { tensors, metadata };
}

/**
 * Reads the selected tensors one at a time, in file order, handing each to fn: the header is
 * parsed once and only one tensor's bytes are held, however large the file. Returns the metadata.
 */
export function forEachSafetensor(path: string, opts: ReadSafetensorsOptions,
  fn: (name: string, tensor: RawTensor) => void): Record<string, string> {
  const src = openFileSource(path);
  try {
    return eachTensor(src, opts, fn);
  } finally {
    src.close();
  }
}

function eachTensor(src: ByteSource, opts: ReadSafetensorsOptions,
  fn: (name: string, tensor: RawTensor) => void): Record<string, string> {
  const header = parseHeaderFrom(src);
  let names: string[];
  if (opts.names) {
    for (const n of opts.names) {
      if (!header.tensors.has(n)) {
        throw new CheckpointError(src.name, `tensor '${n}' not found (file has ${header.tensors.size} tensors)`);
      }
    }
    const wanted = new Set(opts.names);
    names = [...header.tensors.keys()].filter((n) => wanted.has(n));
  } else {
    names = [...header.tensors.keys()];
  }
  for (const name of names) {
    const e = header.tensors.get(name)!;
    const data = src.read(header.dataStart + e.begin, e.end - e.begin, `tensor '${name}'`);
    fn(name, { dtype: e.dtype, shape: e.shape, data });
  }
  return header.metadata;
}

function parseHeaderFrom(src: ByteSource): SafetensorsHeader {
  const file = src.name;
  if (src.size < 8) {
    throw new CheckpointError(file, `truncated: file has ${src.size} bytes, expected at least 8 (header length)`);
  }
  const lenBytes = src.read(0, 8, 'header length');
  const n = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  const headerLen = Number(n);
  if (headerLen < 2) {
    throw new CheckpointError(file, `header length ${headerLen} is too small for a JSON object`);
  }
  if (8 + headerLen > src.size) {
    throw new CheckpointError(file, `truncated: header length ${headerLen} runs past the end of the ${src.size}-byte file`);
  }
  const json = src.read(8, headerLen, 'header');
  return validateHeader(file, json, src.size - 8 - headerLen, 8 + headerLen);
}

function validateHeader(file: string, json: Uint8Array, dataLength: number, dataStart: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw new CheckpointError(file, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CheckpointError(file, 'header JSON must be an object mapping tensor names to {dtype, shape, data_offsets}');
  }
  const metadata: Record<string, string> = {};
  const entries: [string, SafetensorsEntry][] = [];
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        throw new CheckpointError(file, '__metadata__ must be an object of string values');
      }
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          throw new CheckpointError(file, `__metadata__ field '${k}' must be a string, got ${typeof v}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    entries.push([name, validateEntry(file, name, raw, dataLength)]);
  }
  // Overlapping tensors would alias each other's bytes; reject them. Holes
  // (unreferenced bytes) are tolerated.
  entries.sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  for (let i = 1; i < entries.length; i++) {
    const [pn, p] = entries[i - 1];
    const [cn, c] = entries[i];
    if (c.begin < p.end) {
      throw new CheckpointError(file, `tensor '${cn}' data_offsets [${c.begin}, ${c.end}] overlap tensor '${pn}' [${p.begin}, ${p.end}]`);
    }
  }
  // As the reference reader: the data section ends where the last tensor does (bytes appended
  // after it are not part of the file's contents and may hide anything).
  const end = entries.reduce((m, [, e]) => Math.max(m, e.end), 0);
  if (end !== dataLength) {
    throw new CheckpointError(file, `${dataLength - end} trailing bytes after the last tensor's data (data section ${dataLength} bytes, tensors end at ${end})`);
  }
  return { tensors: new Map(entries), metadata, dataStart, dataLength };
}

function validateEntry(file: string, name: string, raw: unknown, dataLength: number): SafetensorsEntry {
  const where = `tensor '${name}'`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CheckpointError(file, `${where}: expected an object {dtype, shape, data_offsets}`);
  }
  const r = raw as Record<string, unknown>;
  const code = r.dtype;
  if (typeof code !== 'string' || !Object.prototype.hasOwnProperty.call(CODE_TO_DTYPE, code)) {
    throw new CheckpointError(file, `${where}: unknown dtype ${JSON.stringify(code)} (expected one of ${Object.keys(CODE_TO_DTYPE).join(', ')})`);
  }
  const dtype = CODE_TO_DTYPE[code];
  const count = checkedNumel(r.shape);
  if (count < 0) {
    throw new CheckpointError(file, `${where}: shape ${JSON.stringify(r.shape)} must be a list of non-negative integers`);
  }
  const off = r.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new CheckpointError(file, `${where}: data_offsets ${JSON.stringify(off)} must be [begin, end] with non-negative integers`);
  }
  const [begin, end] = off as [number, number];
  if (begin > end) {
    throw new CheckpointError(file, `${where}: data_offsets [${begin}, ${end}] have begin > end`);
  }
  const bytes = count * itemSize(dtype);
  if (!Number.isSafeInteger(bytes) || end - begin !== bytes) {
    throw new CheckpointError(file, `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes, expected ${bytes} for ${code} shape [${(r.shape as number[]).join(', ')}]`);
  }
  if (end > dataLength) {
    throw new CheckpointError(file, `${where}: data_offsets [${begin}, ${end}] extend past the ${dataLength}-byte data section (truncated file?)`);
  }
  // `+ 0` turns a JSON -0 into 0.
  return { dtype, shape: (r.shape as number[]).map((d) => d + 0), begin: begin + 0, end: end + 0 };
}

type TensorInput = Map<string, RawTensor> | Record<string, RawTensor>;

/** Build the header (padded) for tensors in iteration order. */
function buildHeader(file: string, tensors: TensorInput, metadata?: Record<string, string>): { header: Uint8Array; list: [string, RawTensor][] } {
  const list: [string, RawTensor][] = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  // Build the JSON by hand: JSON.stringify would move integer-like names
  // (e.g. "0") first, breaking "data in header order".
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new CheckpointError(file, `metadata field '${k}' must be a string, got ${typeof v}`);
      }
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  const seen = new Set<string>();
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new CheckpointError(file, `tensor name '__metadata__' is reserved`);
    if (seen.has(name)) throw new CheckpointError(file, `duplicate tensor name '${name}'`);
    seen.add(name);
    if (!isDType(t?.dtype)) throw new CheckpointError(file, `tensor '${name}': unknown dtype ${JSON.stringify(t?.dtype)}`);
    const count = checkedNumel(t.shape);
    if (count < 0) throw new CheckpointError(file, `tensor '${name}': shape ${JSON.stringify(t.shape)} must be a list of non-negative integers`);
    const bytes = count * itemSize(t.dtype);
    if (!(t.data instanceof Uint8Array) || t.data.length !== bytes) {
      throw new CheckpointError(file, `tensor '${name}': data has ${t.data?.length} bytes, expected ${bytes} for ${t.dtype} shape [${t.shape.join(', ')}]`);
    }
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({
      dtype: DTYPE_TO_CODE[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes],
    })}`);
    offset += bytes;
  }
  let json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  // Pad with spaces so the data section starts 8-byte aligned.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const header = new Uint8Array(8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(json.length), true);
  header.set(json, 8);
  return { header, list };
}

/** Serialise to one buffer (small files, tests, fuzzing). */
export function encodeSafetensors(tensors: TensorInput, metadata?: Record<string, string>): Uint8Array {
  const { header, list } = buildHeader('<safetensors buffer>', tensors, metadata);
  let total = header.length;
  for (const [, t] of list) total += t.data.length;
  const out = new Uint8Array(total);
  out.set(header, 0);
  let pos = header.length;
  for (const [, t] of list) { out.set(t.data, pos); pos += t.data.length; }
  return out;
}

/**
 * Write atomically: stream into `path.tmp-<pid>`, fsync, then rename, so a
 * crash never leaves a half-written checkpoint under the real name.
 */
export function writeSafetensors(path: string, tensors: TensorInput, metadata?: Record<string, string>): void {
  const { header, list } = buildHeader(path, tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    writeFully(fd, header);
    for (const [, t] of list) writeFully(fd, t.data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) { try { fs.closeSync(fd); } catch { /* already failing */ } }
    try { fs.unlinkSync(tmp); } catch { /* may not exist */ }
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(path, `write failed: ${(e as Error).message}`);
  }
}

function writeFully(fd: number, data: Uint8Array): void {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < data.length) {
    done += fs.writeSync(fd, data, done, Math.min(CHUNK, data.length - done));
  }
}
