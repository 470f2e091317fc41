// Engine-independent tensor bytes shared by every checkpoint reader/writer.
// Readers produce RawTensor so they can be tested (and fuzzed) without the
// native addon; the tensor engine converts RawTensor to and from libtorch.
import * as fs from 'node:fs';

export type DType =
  | 'float32' | 'float64' | 'float16' | 'bfloat16'
  | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

/** Little-endian, C-contiguous; `data.length === numel(shape) * itemSize(dtype)`. */
export interface RawTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export const DTYPES: readonly DType[] = [
  'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool',
];

const ITEM_SIZE: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2,
  int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, x);
}

export function itemSize(d: DType): number {
  const s = ITEM_SIZE[d];
  if (s === undefined) throw new TypeError(`unknown dtype ${String(d)}`);
  return s;
}

/**
 * Element count of a shape, or -1 when the shape is not a list of
 * non-negative safe integers or the product is not a safe integer.
 * Returning a sentinel lets each format report the error with its own context.
 */
export function checkedNumel(shape: unknown): number {
  if (!Array.isArray(shape)) return -1;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return -1;
    n *= d;
    if (!Number.isSafeInteger(n)) return -1;
  }
  return n;
}

export function numel(shape: readonly number[]): number {
  const n = checkedNumel(shape);
  if (n < 0) throw new TypeError(`invalid shape [${shape.join(', ')}]`);
  return n;
}

export function isRawTensor(v: unknown): v is RawTensor {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as Partial<RawTensor>;
  return isDType(t.dtype) && Array.isArray(t.shape) && t.data instanceof Uint8Array;
}

/** Any malformed, truncated, hostile or unsupported checkpoint. */
export class CheckpointError extends Error {
  /** The file (or buffer label) the problem was found in. */
  readonly file: string;
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'CheckpointError';
    this.file = file;
  }
}

/**
 * Decode a tensor's elements to JS numbers (bool -> 0/1, int64 -> nearest
 * double). For inspection and tests; the engine works on the bytes directly.
 */
export function toNumbers(t: RawTensor): number[] {
  const n = numel(t.shape);
  const size = itemSize(t.dtype);
  if (t.data.length !== n * size) {
    throw new TypeError(`tensor data has ${t.data.length} bytes, expected ${n * size}`);
  }
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    switch (t.dtype) {
      case 'float32': out[i] = dv.getFloat32(o, true); break;
      case 'float64': out[i] = dv.getFloat64(o, true); break;
      case 'float16': out[i] = halfToNumber(dv.getUint16(o, true)); break;
      case 'bfloat16': out[i] = bf16ToNumber(dv.getUint16(o, true)); break;
      case 'int64': out[i] = Number(dv.getBigInt64(o, true)); break;
      case 'int32': out[i] = dv.getInt32(o, true); break;
      case 'int16': out[i] = dv.getInt16(o, true); break;
      case 'int8': out[i] = dv.getInt8(o); break;
      case 'uint8': out[i] = dv.getUint8(o); break;
      case 'bool': out[i] = dv.getUint8(o) !== 0 ? 1 : 0; break;
    }
  }
  return out;
}

export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function bf16ToNumber(b: number): number {
  // bfloat16 is the top half of a float32.
  const f = new DataView(new ArrayBuffer(4));
  f.setUint32(0, (b & 0xffff) << 16);
  return f.getFloat32(0);
}

/**
 * A fresh plain-Uint8Array copy of bytes [start, end). (Buffer#slice returns
 * a view, and species-based copies stay Buffers.) A fresh array starts at
 * byteOffset 0, so it is aligned for typed-array views.
 */
export function copyBytes(b: Uint8Array, start: number, end: number): Uint8Array {
  const src = b.subarray(start, end);
  const out = new Uint8Array(src.length);
  out.set(src);
  return out;
}

/** Random access to bytes, so readers work the same on files and buffers. */
export interface ByteSource {
  /** Name used in error messages (usually the path). */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `position`, or a CheckpointError if they are not there. */
  read(position: number, length: number, what: string): Uint8Array;
  close(): void;
}

// Positional reads in bounded chunks: no 2 GiB single-read limit and no
// whole-file buffer, so multi-GiB checkpoints load tensor by tensor.
const READ_CHUNK = 1 << 30;

export function openFileSource(path: string): ByteSource {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${(e as Error).message}`);
  }
  let size: number;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (e) {
    fs.closeSync(fd);
    throw new CheckpointError(path, `cannot stat: ${(e as Error).message}`);
  }
  let open = true;
  return {
    name: path,
    size,
    read(position, length, what) {
      checkRange(path, size, position, length, what);
      // Fresh (not pooled) allocation keeps byteOffset 0, so callers may
      // build aligned typed-array views on the result.
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const want = Math.min(READ_CHUNK, length - done);
        let got: number;
        try {
          got = fs.readSync(fd, out, done, want, position + done);
        } catch (e) {
          throw new CheckpointError(path, `read error in ${what}: ${(e as Error).message}`);
        }
        if (got === 0) {
          throw new CheckpointError(path, `truncated: ${what} needs bytes ${position}..${position + length} but the file ended at ${position + done}`);
        }
        done += got;
      }
      return out;
    },
    close() {
      if (open) { open = false; fs.closeSync(fd); }
    },
  };
}

export function bufferSource(buf: Uint8Array, name = '<buffer>'): ByteSource {
  return {
    name,
    size: buf.length,
    read(position, length, what) {
      checkRange(name, buf.length, position, length, what);
      return copyBytes(buf, position, position + length);
    },
    close() { /* nothing to release */ },
  };
}

function checkRange(name: string, size: number, position: number, length: number, what: string): void {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0) {
    throw new CheckpointError(name, `invalid byte range for ${what}: offset ${position}, length ${length}`);
  }
  if (position + length > size) {
    throw new CheckpointError(name, `truncated: ${what} needs bytes ${position}..${position + length} but the file has ${size} bytes`);
  }
}
