// Creating tensors: constants, ranges, host data, and random draws.
import { aten } from './aten';
import { AnyTypedArray, DType, dtypeCode, dtypeOfTypedArray, ITEM_SIZE } from './dtype';
import { native } from './native';
import { Generator } from './random';
import { Device, NestedArray, Shape, Tensor } from './tensor';

export interface TensorOptions { dtype?: DType; device?: Device; requiresGrad?: boolean }
export interface RandomOptions extends TensorOptions { generator?: Generator }

const op = {
  zeros: aten('zeros'), ones: aten('ones'), full: aten('full'), empty: aten('empty.memory_format'),
  arange: aten('arange.start_step'), linspace: aten('linspace'), eye: aten('eye'),
  randn: aten('randn.generator'), rand: aten('rand.generator'), randint: aten('randint.low_generator'),
  randperm: aten('randperm.generator'), multinomial: aten('multinomial'),
  zerosLike: aten('zeros_like'), onesLike: aten('ones_like'), fullLike: aten('full_like'),
  randnLike: aten('randn_like'), randLike: aten('rand_like'),
};

function code(dtype: DType | undefined): number | null {
  return dtype === undefined ? null : dtypeCode(dtype);
}

function finish(t: Tensor, o: TensorOptions): Tensor {
  if (o.requiresGrad) t.requiresGrad = true;
  return t;
}

function shapeOf(shape: Shape | number): number[] {
  return typeof shape === 'number' ? [shape] : [...shape];
}

export function zeros(shape: Shape | number, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.zeros(shapeOf(shape), code(o.dtype), null, o.device ?? null, null)), o);
}
export function ones(shape: Shape | number, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.ones(shapeOf(shape), code(o.dtype), null, o.device ?? null, null)), o);
}
/** Filled with value; float32 unless a dtype is given (PyTorch would infer int64 from an integer). */
export function full(shape: Shape | number, value: number | boolean, o: TensorOptions = {}): Tensor {
  const dt = o.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32');
  return finish(new Tensor(op.full(shapeOf(shape), value, dtypeCode(dt), null, o.device ?? null, null)), o);
}
export function empty(shape: Shape | number, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.empty(shapeOf(shape), code(o.dtype), null, o.device ?? null, null, null)), o);
}
export function scalar(value: number | boolean, o: TensorOptions = {}): Tensor {
  return full([], value, o);
}
/** [start, end) by step; int64 when all three are integers, as in PyTorch. */
export function arange(start: number, end?: number, step = 1, o: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  return finish(new Tensor(op.arange(start, end, step, code(o.dtype), null, o.device ?? null, null)), o);
}
export function linspace(start: number, end: number, steps: number, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.linspace(start, end, steps, code(o.dtype), null, o.device ?? null, null)), o);
}
export function eye(n: number, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.eye(n, code(o.dtype), null, o.device ?? null, null)), o);
}
export function zerosLike(t: Tensor, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.zerosLike(t.h, code(o.dtype), null, o.device ?? null, null, null)), o);
}
export function onesLike(t: Tensor, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.onesLike(t.h, code(o.dtype), null, o.device ?? null, null, null)), o);
}
export function fullLike(t: Tensor, value: number, o: TensorOptions = {}): Tensor {
  return finish(new Tensor(op.fullLike(t.h, value, code(o.dtype), null, o.device ?? null, null, null)), o);
}

/** Copies a typed array into a new tensor of the given shape (default: 1-d). */
export function fromTypedArray(data: AnyTypedArray, shape?: Shape, o: TensorOptions = {}): Tensor {
  const s = shape ? [...shape] : [data.length];
  // Raw 16-bit words are half floats and bytes may be bools: those are taken as they are.
  const raw = data instanceof Uint16Array || (data instanceof Uint8Array && o.dtype === 'bool');
  if (raw && (!o.dtype || ITEM_SIZE[o.dtype] !== data.BYTES_PER_ELEMENT)) {
    throw new TypeError('fromTypedArray: a Uint16Array needs { dtype: "float16" | "bfloat16" }');
  }
  const natural = raw ? o.dtype! : dtypeOfTypedArray(data);
  const dtype = o.dtype ?? natural;
  let t = new Tensor(native.fromBuffer(data, s, dtypeCode(natural), dtype === natural ? o.device : undefined));
  if (dtype !== natural) {
    const converted = t.to({ dtype, device: o.device });
    t.dispose();
    t = converted;
  }
  return finish(t, o);
}

/** A tensor from nested JS arrays (float32 by default, like torch.tensor on floats). */
export function tensor(data: NestedArray | AnyTypedArray, o: TensorOptions = {}): Tensor {
  if (ArrayBuffer.isView(data)) return fromTypedArray(data, undefined, o);
  const shape: number[] = [];
  let level: NestedArray = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  const flat: number[] = [];
  const walk = (v: NestedArray, depth: number): void => {
    if (Array.isArray(v)) {
      if (v.length !== shape[depth]) throw new RangeError(`tensor(): ragged nested array at depth ${depth}`);
      for (const x of v) walk(x, depth + 1);
    } else {
      if (depth !== shape.length) throw new RangeError('tensor(): ragged nested array');
      flat.push(typeof v === 'boolean' ? Number(v) : v);
    }
  };
  walk(data, 0);
  const dtype = o.dtype ?? (typeof level === 'boolean' ? 'bool' : 'float32');
  return fromTypedArray(new Float64Array(flat), shape, { ...o, dtype });
}

export function randn(shape: Shape | number, o: RandomOptions = {}): Tensor {
  return finish(new Tensor(op.randn(shapeOf(shape), o.generator?.gh ?? null, code(o.dtype), null, o.device ?? null, null)), o);
}
export function rand(shape: Shape | number, o: RandomOptions = {}): Tensor {
  return finish(new Tensor(op.rand(shapeOf(shape), o.generator?.gh ?? null, code(o.dtype), null, o.device ?? null, null)), o);
}
/** Integers in [low, high), int64 by default. */
export function randint(low: number, high: number, shape: Shape | number, o: RandomOptions = {}): Tensor {
  return new Tensor(op.randint(low, high, shapeOf(shape), o.generator?.gh ?? null, code(o.dtype ?? 'int64'), null, o.device ?? null, null));
}
export function randperm(n: number, o: RandomOptions = {}): Tensor {
  return new Tensor(op.randperm(n, o.generator?.gh ?? null, code(o.dtype ?? 'int64'), null, o.device ?? null, null));
}
/** Draws numSamples indices per row with probabilities proportional to the weights. */
export function multinomial(weights: Tensor, numSamples: number, replacement = false, generator?: Generator): Tensor {
  return new Tensor(op.multinomial(weights.h, numSamples, replacement, generator?.gh ?? null));
}
export function randnLike(t: Tensor, o: TensorOptions = {}): Tensor {
  return new Tensor(op.randnLike(t.h, code(o.dtype), null, o.device ?? null, null, null));
}
export function randLike(t: Tensor, o: TensorOptions = {}): Tensor {
  return new Tensor(op.randLike(t.h, code(o.dtype), null, o.device ?? null, null, null));
}
