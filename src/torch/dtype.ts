// Tensor element types: names as PyTorch spells them, codes as c10::ScalarType numbers them.

export type DType = 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'float32' | 'float64' | 'bool' | 'bfloat16';

const CODES: Record<DType, number> = {
  uint8: 0, int8: 1, int16: 2, int32: 3, int64: 4, float16: 5, float32: 6, float64: 7, bool: 11, bfloat16: 15,
};
const NAMES = new Map<number, DType>(Object.entries(CODES).map(([k, v]) => [v, k as DType]));

export const ITEM_SIZE: Record<DType, number> = {
  uint8: 1, int8: 1, int16: 2, int32: 4, int64: 8, float16: 2, float32: 4, float64: 8, bool: 1, bfloat16: 2,
};

export function dtypeCode(d: DType): number {
  const code = CODES[d];
  if (code === undefined) throw new TypeError(`unknown dtype '${d}' (expected one of ${Object.keys(CODES).join(', ')})`);
  return code;
}

export function dtypeName(code: number): DType {
  const name = NAMES.get(code);
  if (!name) throw new TypeError(`tensor has a scalar type (code ${code}) that difftune does not expose`);
  return name;
}

export function isFloating(d: DType): boolean {
  return d === 'float16' || d === 'float32' || d === 'float64' || d === 'bfloat16';
}

/** The typed array that holds a dtype's values in JS (half types as raw 16-bit words). */
export type TypedArrayFor<D extends DType> = D extends 'float32' ? Float32Array : D extends 'float64' ? Float64Array
  : D extends 'int64' ? BigInt64Array : D extends 'int32' ? Int32Array : D extends 'int16' ? Int16Array
  : D extends 'int8' ? Int8Array : D extends 'float16' | 'bfloat16' ? Uint16Array : Uint8Array;

export type AnyTypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint16Array | Uint8Array;

export function typedArrayFor(d: DType, buffer: ArrayBuffer): AnyTypedArray {
  switch (d) {
    case 'float32': return new Float32Array(buffer);
    case 'float64': return new Float64Array(buffer);
    case 'int64': return new BigInt64Array(buffer);
    case 'int32': return new Int32Array(buffer);
    case 'int16': return new Int16Array(buffer);
    case 'int8': return new Int8Array(buffer);
    case 'float16': case 'bfloat16': return new Uint16Array(buffer);
    case 'uint8': case 'bool': return new Uint8Array(buffer);
  }
}

/** The dtype a typed array naturally holds. */
export function dtypeOfTypedArray(a: ArrayBufferView): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  throw new TypeError(`cannot infer a dtype from ${a.constructor.name}: pass { dtype }`);
}
