// The Tensor class: a JS owner of one libtorch tensor reference, with PyTorch's methods.
import { aten, atenVoid } from './aten';
import { AnyTypedArray, DType, dtypeCode, dtypeName, typedArrayFor } from './dtype';
import { Handle, native } from './native';
import { Disposable, track } from './scope';

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type Shape = readonly number[];
export type Scalar = number | boolean;
export type NestedArray = number | boolean | NestedArray[];

const op = {
  add: aten('add.Tensor'), addS: aten('add.Scalar'), sub: aten('sub.Tensor'), subS: aten('sub.Scalar'),
  mul: aten('mul.Tensor'), mulS: aten('mul.Scalar'), div: aten('div.Tensor'), divS: aten('div.Scalar'),
  divMode: aten('div.Tensor_mode'), divSMode: aten('div.Scalar_mode'), rsubS: aten('rsub.Scalar'),
  pow: aten('pow.Tensor_Tensor'), powS: aten('pow.Tensor_Scalar'), maximum: aten('maximum'), minimum: aten('minimum'),
  eq: aten('eq.Tensor'), eqS: aten('eq.Scalar'), ne: aten('ne.Tensor'), neS: aten('ne.Scalar'),
  lt: aten('lt.Tensor'), ltS: aten('lt.Scalar'), le: aten('le.Tensor'), leS: aten('le.Scalar'),
  gt: aten('gt.Tensor'), gtS: aten('gt.Scalar'), ge: aten('ge.Tensor'), geS: aten('ge.Scalar'),
  logicalAnd: aten('logical_and'), logicalOr: aten('logical_or'), logicalNot: aten('logical_not'),
  clamp: aten('clamp'), clampT: aten('clamp.Tensor'), lerpS: aten('lerp.Scalar'), lerpT: aten('lerp.Tensor'),
  addcmul: aten('addcmul'), addcdiv: aten('addcdiv'), fmod: aten('fmod.Scalar'), remainder: aten('remainder.Scalar'),
  neg: aten('neg'), exp: aten('exp'), log: aten('log'), sqrt: aten('sqrt'), rsqrt: aten('rsqrt'), abs: aten('abs'),
  sin: aten('sin'), cos: aten('cos'), tanh: aten('tanh'), sigmoid: aten('sigmoid'), relu: aten('relu'),
  square: aten('square'), reciprocal: aten('reciprocal'), floor: aten('floor'), ceil: aten('ceil'), round: aten('round'),
  sign: aten('sign'), erf: aten('erf'), log1p: aten('log1p'), expm1: aten('expm1'), isnan: aten('isnan'),
  isfinite: aten('isfinite'), isinf: aten('isinf'), equal: aten('equal'),
  sum: aten('sum'), sumDim: aten('sum.dim_IntList'), mean: aten('mean'), meanDim: aten('mean.dim'),
  var: aten('var.correction'), std: aten('std.correction'), max: aten('max'), maxDim: aten('max.dim'),
  min: aten('min'), minDim: aten('min.dim'), argmax: aten('argmax'), argmin: aten('argmin'),
  amax: aten('amax'), amin: aten('amin'), logsumexp: aten('logsumexp'), prod: aten('prod'),
  norm: aten('linalg_vector_norm'), cumsum: aten('cumsum'), any: aten('any'), all: aten('all'),
  sort: aten('sort'), topk: aten('topk'), argsort: aten('argsort'),
  matmul: aten('matmul'), mm: aten('mm'), bmm: aten('bmm'), baddbmm: aten('baddbmm'), outer: aten('outer'), t: aten('t'),
  reshape: aten('reshape'), view: aten('view'), permute: aten('permute'), transpose: aten('transpose.int'),
  flatten: aten('flatten.using_ints'), squeeze: aten('squeeze'), squeezeDim: aten('squeeze.dim'),
  unsqueeze: aten('unsqueeze'), expand: aten('expand'), contiguous: aten('contiguous'),
  unbind: aten('unbind.int'), split: aten('split.Tensor'), splitSizes: aten('split_with_sizes'), chunk: aten('chunk'), repeat: aten('repeat'),
  narrow: aten('narrow'), slice: aten('slice.Tensor'), select: aten('select.int'), indexSelect: aten('index_select'),
  gather: aten('gather'), scatterAdd: aten('scatter_add'), maskedFill: aten('masked_fill.Scalar'),
  maskedFillT: aten('masked_fill.Tensor'), maskedSelect: aten('masked_select'), index: aten('index.Tensor'),
  repeatInterleave: aten('repeat_interleave.self_int'), flip: aten('flip'), roll: aten('roll'), tril: aten('tril'), triu: aten('triu'), nonzero: aten('nonzero'),
  clone: aten('clone'), detach: aten('detach'), to: aten('to.dtype_layout'),
  addI: atenVoid('add_.Tensor'), addSI: atenVoid('add_.Scalar'), subI: atenVoid('sub_.Tensor'),
  mulI: atenVoid('mul_.Tensor'), mulSI: atenVoid('mul_.Scalar'), divI: atenVoid('div_.Tensor'),
  divSI: atenVoid('div_.Scalar'), copyI: atenVoid('copy_'), fillI: atenVoid('fill_.Scalar'), zeroI: atenVoid('zero_'),
  clampI: atenVoid('clamp_'), lerpI: atenVoid('lerp_.Scalar'), lerpTI: atenVoid('lerp_.Tensor'),
  addcmulI: atenVoid('addcmul_'), addcdivI: atenVoid('addcdiv_'), sqrtI: atenVoid('sqrt_'),
  normalI: atenVoid('normal_'), uniformI: atenVoid('uniform_'), maskedFillI: atenVoid('masked_fill_.Scalar'),
  indexPutI: atenVoid('index_put_'), expI: atenVoid('exp_'), negI: atenVoid('neg_'),
};

function dims(d: number | readonly number[]): number[] {
  return typeof d === 'number' ? [d] : [...d];
}

export interface ToOptions { dtype?: DType; device?: Device; copy?: boolean; nonBlocking?: boolean }

export class Tensor implements Disposable {
  private handle: Handle | null;
  private cachedShape: number[] | undefined;
  private cachedDtype: DType | undefined;
  /** Kept tensors are never freed by a scope (parameters, optimizer state, caches). */
  kept = false;

  constructor(handle: Handle) {
    this.handle = handle;
    track(this);
  }

  /** The native handle. Throws if this tensor was disposed. */
  get h(): Handle {
    if (this.handle === null) throw new Error('use of a disposed tensor');
    return this.handle;
  }

  /** Frees this reference now (the memory goes when no other tensor or graph holds it). */
  dispose(): void {
    if (this.handle !== null) {
      native.dispose(this.handle);
      this.handle = null;
    }
  }

  /**
   * Points this Tensor object at another tensor's memory, taking over its handle (as
   * `param.data = x` does in PyTorch): modules and optimizers holding this object see the
   * new value. `other` is consumed.
   */
  replaceWith(other: Tensor): this {
    const h = other.h;
    other.handle = null;
    if (this.handle !== null) native.dispose(this.handle);
    this.handle = h;
    this.cachedShape = undefined;
    this.cachedDtype = undefined;
    return this;
  }

  get isDisposed(): boolean {
    return this.handle === null;
  }

  /** Exempts this tensor from every scope; returns it. */
  keep(): this {
    this.kept = true;
    return this;
  }

  // ---- metadata ----
  get shape(): number[] {
    return (this.cachedShape ??= native.shape(this.h));
  }
  get dtype(): DType {
    return (this.cachedDtype ??= dtypeName(native.dtype(this.h)));
  }
  get device(): Device {
    return native.device(this.h) as Device;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new RangeError(`dimension ${dim} out of range for a ${s.length}-d tensor`);
    return s[d];
  }
  strides(): number[] {
    return native.strides(this.h);
  }
  toString(): string {
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- autograd ----
  get requiresGrad(): boolean {
    return native.requiresGrad(this.h);
  }
  set requiresGrad(v: boolean) {
    native.setRequiresGrad(this.h, v);
  }
  requiresGrad_(v = true): this {
    native.setRequiresGrad(this.h, v);
    return this;
  }
  /** The accumulated gradient, or null. Each read returns a new reference (dispose or scope it). */
  get grad(): Tensor | null {
    const g = native.grad(this.h);
    return g ? new Tensor(g) : null;
  }
  set grad(g: Tensor | null) {
    native.setGrad(this.h, g ? g.h : null);
  }
  get isLeaf(): boolean {
    return native.isLeaf(this.h);
  }
  get gradFn(): string | null {
    return native.gradFn(this.h);
  }
  retainGrad(): this {
    native.retainGrad(this.h);
    return this;
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward([this.h], gradient ? [gradient.h] : undefined, opts.retainGraph, opts.createGraph ?? false);
  }
  detach(): Tensor {
    return new Tensor(op.detach(this.h));
  }

  // ---- data out ----
  /** The values as a typed array (a copy; half types as raw 16-bit words). */
  data(): AnyTypedArray {
    return typedArrayFor(this.dtype, native.toBuffer(this.h));
  }
  /** The raw little-endian bytes in C order (a copy). */
  bytes(): Uint8Array {
    return new Uint8Array(native.toBuffer(this.h));
  }
  /** Values as JS numbers (a float32 copy for half types, int64 as numbers). */
  toArray(): number[] {
    const d = this.dtype;
    const src = d === 'float16' || d === 'bfloat16' ? this.to({ dtype: 'float32' }).data() : this.data();
    return Array.from(src as ArrayLike<number | bigint>, Number);
  }
  /** Nested arrays shaped like the tensor, as PyTorch's tolist(). */
  tolist(): NestedArray {
    const flat: NestedArray[] = this.dtype === 'bool' ? this.toArray().map((v) => v !== 0) : this.toArray();
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    const build = (dim: number, offset: number): NestedArray[] => {
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      const out: NestedArray[] = [];
      for (let i = 0; i < shape[dim]; i++) {
        out.push(dim === shape.length - 1 ? flat[offset + i] : build(dim + 1, offset + i * stride));
      }
      return out;
    };
    return build(0, 0);
  }
  item(): number {
    const v = native.item(this.h);
    return typeof v === 'boolean' ? (v ? 1 : 0) : v;
  }

  // ---- conversion ----
  to(target: DType | Device | ToOptions): Tensor {
    const o: ToOptions = typeof target === 'string'
      ? (target === 'cpu' || target.startsWith('cuda') ? { device: target as Device } : { dtype: target as DType })
      : target;
    return new Tensor(op.to(this.h, o.dtype === undefined ? null : dtypeCode(o.dtype), null, o.device ?? null, null,
      o.nonBlocking ?? false, o.copy ?? false, null));
  }
  float(): Tensor { return this.to({ dtype: 'float32' }); }
  double(): Tensor { return this.to({ dtype: 'float64' }); }
  half(): Tensor { return this.to({ dtype: 'float16' }); }
  bfloat16(): Tensor { return this.to({ dtype: 'bfloat16' }); }
  long(): Tensor { return this.to({ dtype: 'int64' }); }
  int(): Tensor { return this.to({ dtype: 'int32' }); }
  bool(): Tensor { return this.to({ dtype: 'bool' }); }
  cpu(): Tensor { return this.to({ device: 'cpu' }); }
  cuda(index = 0): Tensor { return this.to({ device: `cuda:${index}` }); }
  clone(): Tensor { return new Tensor(op.clone(this.h, null)); }
  contiguous(): Tensor { return new Tensor(op.contiguous(this.h)); }
  /** Same memory (for views and in-place checks). */
  sharesStorageWith(other: Tensor): boolean { return native.sameStorage(this.h, other.h); }

  // ---- elementwise ----
  add(o: Tensor | Scalar, alpha: number = 1): Tensor {
    return new Tensor(typeof o === 'object' ? op.add(this.h, o.h, alpha) : op.addS(this.h, o, alpha));
  }
  sub(o: Tensor | Scalar, alpha: number = 1): Tensor {
    return new Tensor(typeof o === 'object' ? op.sub(this.h, o.h, alpha) : op.subS(this.h, o, alpha));
  }
  /** s - this, for a scalar s (Python's `s - t`). */
  rsub(s: number): Tensor { return new Tensor(op.rsubS(this.h, s, 1)); }
  mul(o: Tensor | Scalar): Tensor {
    return new Tensor(typeof o === 'object' ? op.mul(this.h, o.h) : op.mulS(this.h, o));
  }
  div(o: Tensor | Scalar, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode) {
      return new Tensor(typeof o === 'object' ? op.divMode(this.h, o.h, roundingMode) : op.divSMode(this.h, o, roundingMode));
    }
    return new Tensor(typeof o === 'object' ? op.div(this.h, o.h) : op.divS(this.h, o));
  }
  pow(o: Tensor | number): Tensor {
    return new Tensor(typeof o === 'object' ? op.pow(this.h, o.h) : op.powS(this.h, o));
  }
  maximum(o: Tensor): Tensor { return new Tensor(op.maximum(this.h, o.h)); }
  minimum(o: Tensor): Tensor { return new Tensor(op.minimum(this.h, o.h)); }
  eq(o: Tensor | Scalar): Tensor { return new Tensor(typeof o === 'object' ? op.eq(this.h, o.h) : op.eqS(this.h, o)); }
  ne(o: Tensor | Scalar): Tensor { return new Tensor(typeof o === 'object' ? op.ne(this.h, o.h) : op.neS(this.h, o)); }
  lt(o: Tensor | Scalar): Tensor { return new Tensor(typeof o === 'object' ? op.lt(this.h, o.h) : op.ltS(this.h, o)); }
  le(o: Tensor | Scalar): Tensor { return new Tensor(typeof o === 'object' ? op.le(this.h, o.h) : op.leS(this.h, o)); }
  gt(o: Tensor | Scalar): Tensor { return new Tensor(typeof o === 'object' ? op.gt(this.h, o.h) : op.gtS(this.h, o)); }
  ge(o: Tensor | Scalar): Tensor { return new Tensor(typeof o === 'object' ? op.ge(this.h, o.h) : op.geS(this.h, o)); }
  logicalAnd(o: Tensor): Tensor { return new Tensor(op.logicalAnd(this.h, o.h)); }
  logicalOr(o: Tensor): Tensor { return new Tensor(op.logicalOr(this.h, o.h)); }
  logicalNot(): Tensor { return new Tensor(op.logicalNot(this.h)); }
  clamp(min?: number | Tensor | null, max?: number | Tensor | null): Tensor {
    if ((min !== null && typeof min === 'object') || (max !== null && typeof max === 'object')) {
      const lo = min === undefined || min === null ? null : typeof min === 'number' ? scalarLike(this, min).h : min.h;
      const hi = max === undefined || max === null ? null : typeof max === 'number' ? scalarLike(this, max).h : max.h;
      return new Tensor(op.clampT(this.h, lo, hi));
    }
    return new Tensor(op.clamp(this.h, min ?? null, max ?? null));
  }
  lerp(end: Tensor, weight: number | Tensor): Tensor {
    return new Tensor(typeof weight === 'number' ? op.lerpS(this.h, end.h, weight) : op.lerpT(this.h, end.h, weight.h));
  }
  addcmul(t1: Tensor, t2: Tensor, value = 1): Tensor { return new Tensor(op.addcmul(this.h, t1.h, t2.h, value)); }
  addcdiv(t1: Tensor, t2: Tensor, value = 1): Tensor { return new Tensor(op.addcdiv(this.h, t1.h, t2.h, value)); }
  fmod(s: number): Tensor { return new Tensor(op.fmod(this.h, s)); }
  remainder(s: number): Tensor { return new Tensor(op.remainder(this.h, s)); }
  neg(): Tensor { return new Tensor(op.neg(this.h)); }
  exp(): Tensor { return new Tensor(op.exp(this.h)); }
  log(): Tensor { return new Tensor(op.log(this.h)); }
  sqrt(): Tensor { return new Tensor(op.sqrt(this.h)); }
  rsqrt(): Tensor { return new Tensor(op.rsqrt(this.h)); }
  abs(): Tensor { return new Tensor(op.abs(this.h)); }
  sin(): Tensor { return new Tensor(op.sin(this.h)); }
  cos(): Tensor { return new Tensor(op.cos(this.h)); }
  tanh(): Tensor { return new Tensor(op.tanh(this.h)); }
  sigmoid(): Tensor { return new Tensor(op.sigmoid(this.h)); }
  relu(): Tensor { return new Tensor(op.relu(this.h)); }
  square(): Tensor { return new Tensor(op.square(this.h)); }
  reciprocal(): Tensor { return new Tensor(op.reciprocal(this.h)); }
  floor(): Tensor { return new Tensor(op.floor(this.h)); }
  ceil(): Tensor { return new Tensor(op.ceil(this.h)); }
  round(): Tensor { return new Tensor(op.round(this.h)); }
  sign(): Tensor { return new Tensor(op.sign(this.h)); }
  erf(): Tensor { return new Tensor(op.erf(this.h)); }
  log1p(): Tensor { return new Tensor(op.log1p(this.h)); }
  expm1(): Tensor { return new Tensor(op.expm1(this.h)); }
  isnan(): Tensor { return new Tensor(op.isnan(this.h)); }
  isfinite(): Tensor { return new Tensor(op.isfinite(this.h)); }
  /** torch.equal: same shape and every element equal (bit-exact comparisons in tests). */
  equal(o: Tensor): boolean { return op.equal(this.h, o.h) as boolean; }
  isinf(): Tensor { return new Tensor(op.isinf(this.h)); }

  // ---- reductions ----
  sum(dim?: number | readonly number[], keepdim = false, dtype?: DType): Tensor {
    const dt = dtype ? dtypeCode(dtype) : null;
    return new Tensor(dim === undefined ? op.sum(this.h, dt) : op.sumDim(this.h, dims(dim), keepdim, dt));
  }
  mean(dim?: number | readonly number[], keepdim = false, dtype?: DType): Tensor {
    const dt = dtype ? dtypeCode(dtype) : null;
    return new Tensor(dim === undefined ? op.mean(this.h, dt) : op.meanDim(this.h, dims(dim), keepdim, dt));
  }
  /** Variance with Bessel's correction by default (correction = 1), as torch.var. */
  var(dim?: number | readonly number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return new Tensor(op.var(this.h, dim === undefined ? null : dims(dim), opts.correction ?? 1, opts.keepdim ?? false));
  }
  std(dim?: number | readonly number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return new Tensor(op.std(this.h, dim === undefined ? null : dims(dim), opts.correction ?? 1, opts.keepdim ?? false));
  }
  /** Max over everything, or [values, indices] over a dim. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): [Tensor, Tensor];
  max(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return new Tensor(op.max(this.h));
    const [v, i] = op.maxDim(this.h, dim, keepdim);
    return [new Tensor(v), new Tensor(i)];
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): [Tensor, Tensor];
  min(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return new Tensor(op.min(this.h));
    const [v, i] = op.minDim(this.h, dim, keepdim);
    return [new Tensor(v), new Tensor(i)];
  }
  argmax(dim?: number, keepdim = false): Tensor { return new Tensor(op.argmax(this.h, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return new Tensor(op.argmin(this.h, dim ?? null, keepdim)); }
  amax(dim: number | readonly number[] = [], keepdim = false): Tensor { return new Tensor(op.amax(this.h, dims(dim), keepdim)); }
  amin(dim: number | readonly number[] = [], keepdim = false): Tensor { return new Tensor(op.amin(this.h, dims(dim), keepdim)); }
  logsumexp(dim: number | readonly number[], keepdim = false): Tensor {
    return new Tensor(op.logsumexp(this.h, dims(dim), keepdim));
  }
  prod(dtype?: DType): Tensor { return new Tensor(op.prod(this.h, dtype ? dtypeCode(dtype) : null)); }
  /** Vector p-norm over dims (all by default), as torch.linalg.vector_norm. */
  norm(p = 2, dim?: number | readonly number[], keepdim = false): Tensor {
    return new Tensor(op.norm(this.h, p, dim === undefined ? null : dims(dim), keepdim, null));
  }
  cumsum(dim: number, dtype?: DType): Tensor { return new Tensor(op.cumsum(this.h, dim, dtype ? dtypeCode(dtype) : null)); }
  any(): Tensor { return new Tensor(op.any(this.h)); }
  all(): Tensor { return new Tensor(op.all(this.h)); }
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    const [v, i] = op.sort(this.h, dim, descending);
    return [new Tensor(v), new Tensor(i)];
  }
  argsort(dim = -1, descending = false): Tensor { return new Tensor(op.argsort(this.h, dim, descending)); }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    const [v, i] = op.topk(this.h, k, dim, largest, sorted);
    return [new Tensor(v), new Tensor(i)];
  }

  // ---- linear algebra ----
  matmul(o: Tensor): Tensor { return new Tensor(op.matmul(this.h, o.h)); }
  mm(o: Tensor): Tensor { return new Tensor(op.mm(this.h, o.h)); }
  bmm(o: Tensor): Tensor { return new Tensor(op.bmm(this.h, o.h)); }
  /** beta * this + alpha * (b1 @ b2), batched. */
  baddbmm(b1: Tensor, b2: Tensor, beta = 1, alpha = 1): Tensor {
    return new Tensor(op.baddbmm(this.h, b1.h, b2.h, beta, alpha));
  }
  outer(o: Tensor): Tensor { return new Tensor(op.outer(this.h, o.h)); }
  t(): Tensor { return new Tensor(op.t(this.h)); }

  // ---- shape ----
  reshape(...shape: number[] | [readonly number[]]): Tensor { return new Tensor(op.reshape(this.h, flatShape(shape))); }
  view(...shape: number[] | [readonly number[]]): Tensor { return new Tensor(op.view(this.h, flatShape(shape))); }
  permute(...order: number[] | [readonly number[]]): Tensor { return new Tensor(op.permute(this.h, flatShape(order))); }
  transpose(d0: number, d1: number): Tensor { return new Tensor(op.transpose(this.h, d0, d1)); }
  flatten(start = 0, end = -1): Tensor { return new Tensor(op.flatten(this.h, start, end)); }
  squeeze(dim?: number): Tensor {
    return new Tensor(dim === undefined ? op.squeeze(this.h) : op.squeezeDim(this.h, dim));
  }
  unsqueeze(dim: number): Tensor { return new Tensor(op.unsqueeze(this.h, dim)); }
  expand(...shape: number[] | [readonly number[]]): Tensor { return new Tensor(op.expand(this.h, flatShape(shape), false)); }
  expandAs(o: Tensor): Tensor { return this.expand(o.shape); }
  repeat(...times: number[] | [readonly number[]]): Tensor { return new Tensor(op.repeat(this.h, flatShape(times))); }
  /** Pieces of `size` along dim, or pieces of the given sizes. */
  split(size: number | readonly number[], dim = 0): Tensor[] {
    const hs: Handle[] = typeof size === 'number' ? op.split(this.h, size, dim) : op.splitSizes(this.h, [...size], dim);
    return hs.map((h) => new Tensor(h));
  }
  /** The slices along dim, as views (torch.unbind). */
  unbind(dim = 0): Tensor[] {
    return (op.unbind(this.h, dim) as Handle[]).map((h) => new Tensor(h));
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return (op.chunk(this.h, chunks, dim) as Handle[]).map((h) => new Tensor(h));
  }
  narrow(dim: number, start: number, length: number): Tensor { return new Tensor(op.narrow(this.h, dim, start, length)); }
  /** Each element repeated `repeats` times along dim (torch.repeat_interleave). */
  repeatInterleave(repeats: number, dim: number): Tensor {
    return new Tensor(op.repeatInterleave(this.h, repeats, dim, null));
  }
  flip(dims_: number | readonly number[]): Tensor { return new Tensor(op.flip(this.h, dims(dims_))); }
  roll(shifts: number | readonly number[], dim: number | readonly number[]): Tensor {
    return new Tensor(op.roll(this.h, dims(shifts), dims(dim)));
  }
  tril(diagonal = 0): Tensor { return new Tensor(op.tril(this.h, diagonal)); }
  triu(diagonal = 0): Tensor { return new Tensor(op.triu(this.h, diagonal)); }

  // ---- indexing ----
  /** this[start:end:step] along dim (a view); end may be omitted or negative. */
  slice(dim: number, start = 0, end?: number | null, step = 1): Tensor {
    return new Tensor(op.slice(this.h, dim, start, end ?? null, step));
  }
  /** this[..., index, ...] along dim, dropping it (a view). */
  select(dim: number, index: number): Tensor { return new Tensor(op.select(this.h, dim, index)); }
  indexSelect(dim: number, index: Tensor): Tensor { return new Tensor(op.indexSelect(this.h, dim, index.h)); }
  gather(dim: number, index: Tensor): Tensor { return new Tensor(op.gather(this.h, dim, index.h, false)); }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return new Tensor(op.scatterAdd(this.h, dim, index.h, src.h)); }
  maskedFill(mask: Tensor, value: number | Tensor): Tensor {
    return new Tensor(typeof value === 'number' ? op.maskedFill(this.h, mask.h, value) : op.maskedFillT(this.h, mask.h, value.h));
  }
  /** The elements where a boolean mask is true, flattened (this[mask]). */
  maskedSelect(mask: Tensor): Tensor { return new Tensor(op.maskedSelect(this.h, mask.h)); }
  /** Advanced indexing: this[i0, i1, ...] with index tensors (null keeps a dim whole). */
  index(indices: readonly (Tensor | null)[]): Tensor {
    return new Tensor(op.index(this.h, indices.map((t) => (t ? t.h : null))));
  }
  nonzero(): Tensor { return new Tensor(op.nonzero(this.h)); }

  // ---- in place (return this) ----
  add_(o: Tensor | Scalar, alpha: number = 1): this {
    if (typeof o === 'object') op.addI(this.h, o.h, alpha);
    else op.addSI(this.h, o, alpha);
    return this;
  }
  sub_(o: Tensor, alpha: number = 1): this { op.subI(this.h, o.h, alpha); return this; }
  mul_(o: Tensor | Scalar): this {
    if (typeof o === 'object') op.mulI(this.h, o.h);
    else op.mulSI(this.h, o);
    return this;
  }
  div_(o: Tensor | Scalar): this {
    if (typeof o === 'object') op.divI(this.h, o.h);
    else op.divSI(this.h, o);
    return this;
  }
  copy_(src: Tensor, nonBlocking = false): this { op.copyI(this.h, src.h, nonBlocking); return this; }
  fill_(v: Scalar): this { op.fillI(this.h, v); return this; }
  zero_(): this { op.zeroI(this.h); return this; }
  clamp_(min?: number | null, max?: number | null): this { op.clampI(this.h, min ?? null, max ?? null); return this; }
  lerp_(end: Tensor, weight: number | Tensor): this {
    if (typeof weight === 'number') op.lerpI(this.h, end.h, weight);
    else op.lerpTI(this.h, end.h, weight.h);
    return this;
  }
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this { op.addcmulI(this.h, t1.h, t2.h, value); return this; }
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this { op.addcdivI(this.h, t1.h, t2.h, value); return this; }
  sqrt_(): this { op.sqrtI(this.h); return this; }
  exp_(): this { op.expI(this.h); return this; }
  neg_(): this { op.negI(this.h); return this; }
  normal_(mean = 0, std = 1, generator?: { gh: unknown }): this { op.normalI(this.h, mean, std, generator?.gh ?? null); return this; }
  uniform_(from = 0, to = 1, generator?: { gh: unknown }): this { op.uniformI(this.h, from, to, generator?.gh ?? null); return this; }
  maskedFill_(mask: Tensor, value: number): this { op.maskedFillI(this.h, mask.h, value); return this; }
  indexPut_(indices: readonly (Tensor | null)[], values: Tensor, accumulate = false): this {
    op.indexPutI(this.h, indices.map((t) => (t ? t.h : null)), values.h, accumulate);
    return this;
  }
}

function flatShape(args: number[] | [readonly number[]]): number[] {
  return args.length === 1 && Array.isArray(args[0]) ? [...(args[0] as readonly number[])] : (args as number[]);
}

const fullOp = aten('full');
/** A 0-d tensor with this tensor's dtype and device (for ops that only take tensors). */
export function scalarLike(t: Tensor, value: number): Tensor {
  return new Tensor(fullOp([], value, dtypeCode(t.dtype), null, t.device, null));
}

/** Wraps a handle returned by native code as a Tensor (null stays null). */
export function wrap(h: Handle): Tensor;
export function wrap(h: Handle | null): Tensor | null;
export function wrap(h: Handle | null): Tensor | null {
  return h ? new Tensor(h) : null;
}
