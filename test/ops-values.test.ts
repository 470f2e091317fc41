// Op values against PyTorch: test/fixtures/ops/refs.json holds small inputs and the outputs
// PyTorch computed for them (made by tools/make_op_refs.py). Each case rebuilds its inputs
// here, runs the same op through the TS API, and compares: bit for bit where the result is
// exactly rounded (and for RNG draws), else within the case's [atol, rtol].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { F, Tensor } from '../src/torch';
import type { DType } from '../src/torch';

type Value = number | 'inf' | '-inf' | 'nan';
interface Encoded { dtype: DType; shape: number[]; data: Value[] }
type Output = Encoded | Output[];
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Args = Record<string, any>;
interface Case {
  name: string;
  op: string;
  args?: Args;
  inputs: Record<string, Encoded>;
  out: Output;
  tol: 'exact' | [number, number];
}
type Inputs = Record<string, Tensor>;
type Result = Tensor | Result[];
type Impl = (i: Inputs, a: Args) => Result;

const REFS = path.join(__dirname, '..', '..', 'test', 'fixtures', 'ops', 'refs.json');
const refsText = fs.readFileSync(REFS, 'utf8');
const refs = JSON.parse(refsText) as { torch: string; cases: Case[] };

function num(v: Value): number {
  if (v === 'inf') return Infinity;
  if (v === '-inf') return -Infinity;
  if (v === 'nan') return NaN;
  return v;
}

function decode(e: Encoded): Tensor {
  const vals = e.data.map(num);
  switch (e.dtype) {
    case 'float32': return torch.fromTypedArray(Float32Array.from(vals), e.shape);
    case 'float64': return torch.fromTypedArray(Float64Array.from(vals), e.shape);
    case 'int64': return torch.fromTypedArray(BigInt64Array.from(vals.map((v) => BigInt(v))), e.shape);
    case 'bool': return torch.fromTypedArray(Uint8Array.from(vals), e.shape, { dtype: 'bool' });
    default: throw new Error(`refs.json: unexpected dtype ${e.dtype}`);
  }
}

function expectedValues(e: Encoded): number[] {
  const vals = e.data.map(num);
  return e.dtype === 'float32' ? vals.map(Math.fround) : vals;
}

function compare(actual: Result, expected: Output, tol: Case['tol'], where: string): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${where}: expected ${expected.length} tensors, got one`);
    assert.equal(actual.length, expected.length, `${where}: number of outputs`);
    expected.forEach((e, k) => compare(actual[k], e, tol, `${where}[${k}]`));
    return;
  }
  assert.ok(actual instanceof Tensor, `${where}: expected a tensor`);
  assert.equal(actual.dtype, expected.dtype, `${where}: dtype`);
  assert.deepEqual(actual.shape, expected.shape, `${where}: shape`);
  const got = actual.toArray();
  const want = expectedValues(expected);
  for (let k = 0; k < want.length; k++) {
    const a = got[k];
    const e = want[k];
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(a), `${where}: element ${k} is ${a}, PyTorch has NaN`);
    } else if (tol === 'exact' || !Number.isFinite(e)) {
      assert.ok(Object.is(a, e), `${where}: element ${k} is ${a}, PyTorch has ${e} (bit-exact expected)`);
    } else {
      const [atol, rtol] = tol;
      const err = Math.abs(a - e);
      assert.ok(err <= atol + rtol * Math.abs(e), `${where}: element ${k} is ${a}, PyTorch has ${e} (error ${err})`);
    }
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const call = (t: Tensor, fn: string, ...args: unknown[]): Tensor => (t as any)[fn](...args);
const present = (...ts: (Tensor | undefined)[]): Tensor[] => ts.filter((t): t is Tensor => t !== undefined);

const IMPLS: Record<string, Impl> = {
  // elementwise
  binary: (i, a) => {
    if (a.fn === 'add' || a.fn === 'sub') return call(i.a, a.fn, i.b, a.alpha ?? 1);
    if (a.fn === 'div') return i.a.div(i.b, a.roundingMode);
    return call(i.a, a.fn, i.b);
  },
  scalar: (i, a) => {
    if (a.fn === 'add' || a.fn === 'sub') return call(i.a, a.fn, a.s, a.alpha ?? 1);
    if (a.fn === 'div') return i.a.div(a.s, a.roundingMode);
    return call(i.a, a.fn, a.s);
  },
  unary: (i, a) => call(i.x, a.fn),
  where: (i, a) => torch.where(i.c, i.a ?? a.a, i.b ?? a.b),
  clamp: (i, a) => i.x.clamp(i.lo ?? a.min, i.hi ?? a.max),
  clamp_: (i, a) => i.x.clone().clamp_(a.min, a.max),
  lerp: (i, a) => i.a.lerp(i.b, i.w ?? a.w),
  addc: (i, a) => call(i.x, a.fn, i.t1, i.t2, a.value),
  // reductions
  reduce: (i, a) => call(i.x, a.fn, a.dim, a.keepdim ?? false, a.dtype),
  varstd: (i, a) => call(i.x, a.fn, a.dim, { correction: a.correction, keepdim: a.keepdim }),
  maxmin: (i, a) => (a.dim === undefined ? call(i.x, a.fn) : call(i.x, a.fn, a.dim, a.keepdim)),
  arg: (i, a) => call(i.x, a.fn, a.dim, a.keepdim),
  logsumexp: (i, a) => i.x.logsumexp(a.dim, a.keepdim),
  prod: (i) => i.x.prod(),
  norm: (i, a) => i.x.norm(a.p === 'inf' ? Infinity : a.p ?? 2, a.dim, a.keepdim),
  cumsum: (i, a) => i.x.cumsum(a.dim),
  anyall: (i, a) => call(i.x, a.fn),
  sort: (i, a) => i.x.sort(a.dim, a.descending),
  argsort: (i, a) => i.x.argsort(a.dim, a.descending),
  topk: (i, a) => i.x.topk(a.k, a.dim, a.largest),
  // linear algebra
  matmul: (i) => i.a.matmul(i.b),
  mm: (i) => i.a.mm(i.b),
  bmm: (i) => i.a.bmm(i.b),
  baddbmm: (i, a) => i.x.baddbmm(i.a, i.b, a.beta, a.alpha),
  outer: (i) => i.a.outer(i.b),
  t: (i) => i.x.t(),
  linear: (i) => F.linear(i.x, i.w, i.b),
  einsum: (i, a) => torch.einsum(a.eq, i.a, i.b),
  // shapes
  shape: (i, a) => call(i.x, a.fn, a.shape),
  transpose: (i, a) => i.x.transpose(a.d0, a.d1),
  flatten: (i, a) => i.x.flatten(a.start, a.end),
  squeeze: (i, a) => i.x.squeeze(a.dim),
  unsqueeze: (i, a) => i.x.unsqueeze(a.dim),
  contiguous: (i) => {
    const c = i.x.transpose(0, 1).contiguous();
    const s = c.shape;
    assert.deepEqual(c.strides(), [s[1] * s[2], s[2], 1]);
    return c;
  },
  cat: (i, a) => torch.cat(present(i.a, i.b, i.c), a.dim),
  stack: (i, a) => torch.stack(present(i.a, i.b, i.c), a.dim),
  split: (i, a) => i.x.split(a.size, a.dim),
  chunk: (i, a) => i.x.chunk(a.chunks, a.dim),
  narrow: (i, a) => i.x.narrow(a.dim, a.start, a.length),
  flip: (i, a) => i.x.flip(a.dims),
  roll: (i, a) => i.x.roll(a.shifts, a.dim),
  tri: (i, a) => call(i.x, a.fn, a.diagonal),
  broadcastTensors: (i) => torch.broadcastTensors(i.a, i.b),
  // indexing
  slice: (i, a) => i.x.slice(a.dim, a.start, a.end, a.step),
  select: (i, a) => i.x.select(a.dim, a.index),
  indexSelect: (i, a) => i.x.indexSelect(a.dim, i.i),
  gather: (i, a) => i.x.gather(a.dim, i.i),
  scatterAdd: (i, a) => i.x.scatterAdd(a.dim, i.i, i.src),
  maskedFill: (i, a) => i.x.maskedFill(i.m, i.v ?? a.value),
  maskedFill_: (i, a) => i.x.clone().maskedFill_(i.m, a.value),
  maskedSelect: (i) => i.x.maskedSelect(i.m),
  index: (i) => i.x.index(i.i1 ? [i.i0 ?? null, i.i1] : [i.i0]),
  indexPut_: (i, a) => i.x.clone().indexPut_(i.i1 ? [i.i0, i.i1] : [i.i0], i.v, a.accumulate),
  nonzero: (i) => i.x.nonzero(),
  // functional
  layerNorm: (i, a) => F.layerNorm(i.x, a.shape, i.w, i.b, a.eps),
  groupNorm: (i, a) => F.groupNorm(i.x, a.groups, i.w, i.b),
  act: (i, a) => (a.fn === 'gelu' ? F.gelu(i.x, a.approximate) : a.fn === 'silu' ? F.silu(i.x) : F.relu(i.x)),
  softmax: (i, a) => (a.fn === 'softmax' ? F.softmax(i.x, a.dim, a.dtype) : F.logSoftmax(i.x, a.dim, a.dtype)),
  conv2d: (i, a) => F.conv2d(i.x, i.w, i.b, { stride: a.stride, padding: a.padding, dilation: a.dilation, groups: a.groups }),
  convTranspose2d: (i, a) => F.convTranspose2d(i.x, i.w, i.b,
    { stride: a.stride, padding: a.padding, outputPadding: a.outputPadding, groups: a.groups }),
  avgPool2d: (i, a) => F.avgPool2d(i.x, a.kernel,
    { stride: a.stride, padding: a.padding, ceilMode: a.ceilMode, countIncludePad: a.countIncludePad }),
  maxPool2d: (i, a) => F.maxPool2d(i.x, a.kernel, { stride: a.stride, padding: a.padding, dilation: a.dilation, ceilMode: a.ceilMode }),
  adaptiveAvgPool2d: (i, a) => F.adaptiveAvgPool2d(i.x, a.size),
  interpolate: (i, a) => F.interpolate(i.x, { size: a.size, scaleFactor: a.scaleFactor, mode: a.mode, alignCorners: a.alignCorners }),
  pad: (i, a) => F.pad(i.x, a.pad, a.value),
  embedding: (i) => F.embedding(i.ids, i.w),
  loss: (i, a) => (a.fn === 'mse' ? F.mseLoss(i.a, i.b, a.reduction) : F.l1Loss(i.a, i.b, a.reduction)),
  dropoutEval: (i) => F.dropout(i.x, 0.5, false),
  attention: (i, a) => F.scaledDotProductAttention(i.q, i.k, i.v, { attnMask: i.mask, isCausal: a.isCausal, scale: a.scale }),
  // creation and conversion
  create: (_i, a) => {
    const o = { dtype: a.dtype as DType | undefined };
    switch (a.fn) {
      case 'zeros': return torch.zeros(a.shape, o);
      case 'ones': return torch.ones(a.shape, o);
      case 'full': return torch.full(a.shape, a.value, o);
      case 'arange': return torch.arange(a.start, a.end, a.step, o);
      case 'linspace': return torch.linspace(a.start, a.end, a.steps, o);
      case 'eye': return torch.eye(a.n, o);
      default: throw new Error(`create: ${a.fn}`);
    }
  },
  to: (i, a) => (a.dtype === 'float16' || a.dtype === 'bfloat16' ? i.x.to(a.dtype as DType).float() : i.x.to(a.dtype as DType)),
  rng: (i, a) => {
    torch.manualSeed(a.seed);
    switch (a.fn) {
      case 'randn': return torch.randn(a.shape, { dtype: a.dtype });
      case 'rand': return torch.rand(a.shape, { dtype: a.dtype });
      case 'randint': return torch.randint(a.low, a.high, a.shape);
      case 'randperm': return torch.randperm(a.n);
      case 'multinomial': return torch.multinomial(i.p, a.n, a.replacement ?? false);
      case 'sequence': return [torch.randn([2, 3]), torch.rand(4), torch.randint(-3, 3, [3])];
      case 'like': return [torch.randnLike(i.x), torch.randLike(i.x)];
      case 'generator': {
        const g = new torch.Generator('cpu').manualSeed(a.seed);
        return [torch.empty([2, 3]).normal_(0, 1, g), torch.empty(5).uniform_(-1, 1, g), torch.empty(3).normal_(2, 0.5, g),
          torch.randn(4, { generator: g }), torch.rand(3, { generator: g })];
      }
      case 'linear': {
        const m = new torch.nn.Linear(a.in, a.out);
        return [m.weight, m.bias!];
      }
      case 'conv2d': {
        const m = new torch.nn.Conv2d(a.in, a.out, a.k, { groups: a.groups, bias: a.bias });
        return m.bias ? [m.weight, m.bias] : [m.weight];
      }
      default: throw new Error(`rng: ${a.fn}`);
    }
  },
};

// Other TS paths that must give the same values as the main implementation.
const ALTERNATES: Record<string, Impl> = {
  attention: (i, a) => F.explicitAttention(i.q, i.k, i.v, { attnMask: i.mask, isCausal: a.isCausal, scale: a.scale }),
  matmul: (i) => torch.matmul(i.a, i.b),
  linear: (i) => {
    const y = i.x.matmul(i.w.t());
    return i.b ? y.add(i.b) : y;
  },
};

test('refs.json is small and every implementation is exercised', () => {
  assert.ok(Buffer.byteLength(refsText) < 300 * 1024, `refs.json is ${Buffer.byteLength(refsText)} bytes`);
  const used = new Set(refs.cases.map((c) => c.op));
  for (const op of Object.keys(IMPLS)) assert.ok(used.has(op), `no case in refs.json uses '${op}'`);
  const names = refs.cases.map((c) => c.name);
  assert.equal(new Set(names).size, names.length, 'case names are unique');
});

for (const c of refs.cases) {
  test(c.name, () => {
    const impl = IMPLS[c.op];
    assert.ok(impl, `no TS implementation for op kind '${c.op}'`);
    torch.scope(() => {
      const inputs: Inputs = {};
      for (const [k, e] of Object.entries(c.inputs)) inputs[k] = decode(e);
      const args = c.args ?? {};
      compare(impl(inputs, args), c.out, c.tol, c.name);
      const alt = ALTERNATES[c.op];
      if (alt) compare(alt(inputs, args), c.out, c.tol, `${c.name} (alternate path)`);
      // Inputs are not modified by out-of-place ops.
      for (const [k, e] of Object.entries(c.inputs)) compare(inputs[k], e, 'exact', `${c.name}: input ${k} afterwards`);
    });
  });
}
