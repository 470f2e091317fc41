// float64 gradient checks: autograd against central finite differences for every
// differentiable op the TS API exposes (see src/torch/gradcheck.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../src/torch';
import { F, Tensor } from '../src/torch';

const G = new torch.Generator('cpu', 2024);

/** A float64 leaf requiring grad, standard normal. */
function rnd(...shape: number[]): Tensor {
  return torch.randn(shape, { dtype: 'float64', generator: G }).requiresGrad_();
}
/** A float64 leaf requiring grad, uniform in [lo, hi). */
function uni(lo: number, hi: number, ...shape: number[]): Tensor {
  return torch.rand(shape, { dtype: 'float64', generator: G }).mul(hi - lo).add(lo).requiresGrad_();
}
/** Constant (no grad) float64 tensor. */
function konst(...shape: number[]): Tensor {
  return torch.randn(shape, { dtype: 'float64', generator: G });
}
function ids(values: number[], shape?: number[]): Tensor {
  return torch.tensor(values, { dtype: 'int64' }).reshape(shape ?? [values.length]);
}

function check(name: string, make: () => { fn: (...xs: Tensor[]) => Tensor | Tensor[]; inputs: Tensor[] },
  opts: torch.GradcheckOptions = {}): void {
  test(name, () => {
    torch.scope(() => {
      const { fn, inputs } = make();
      const result = torch.gradcheck(fn, inputs, opts);
      assert.ok(result.ok, result.message);
      assert.ok(result.checked > 0);
    });
  });
}

// ---------------------------------------------------------------- elementwise
check('add broadcast alpha', () => ({ fn: (a, b) => a.add(b, 2.5), inputs: [rnd(2, 3), rnd(3)] }));
check('sub broadcast', () => ({ fn: (a, b) => a.sub(b), inputs: [rnd(2, 1, 3), rnd(4, 1)] }));
check('mul broadcast', () => ({ fn: (a, b) => a.mul(b), inputs: [rnd(2, 3), rnd(2, 1)] }));
check('div broadcast', () => ({ fn: (a, b) => a.div(b), inputs: [rnd(2, 3), uni(0.5, 2, 3)] }));
check('scalar ops', () => ({ fn: (a) => a.add(1.5).sub(0.25).mul(3).div(7).rsub(2), inputs: [rnd(2, 3)] }));
check('pow tensor', () => ({ fn: (a, b) => a.pow(b), inputs: [uni(0.5, 2, 2, 3), rnd(3)] }));
check('pow scalar', () => ({ fn: (a) => a.pow(3).add(a.abs().add(0.5).pow(-1.7)), inputs: [rnd(2, 3)] }));
check('maximum minimum', () => ({ fn: (a, b) => a.maximum(b).add(a.minimum(b).mul(2)), inputs: [rnd(2, 3), rnd(2, 3)] }));
for (const fn of ['exp', 'tanh', 'sigmoid', 'sin', 'cos', 'erf', 'expm1', 'neg', 'square', 'abs', 'relu'] as const) {
  check(fn, () => ({ fn: (x) => x[fn](), inputs: [rnd(3, 4)] }));
}
for (const fn of ['log', 'sqrt', 'rsqrt', 'reciprocal', 'log1p'] as const) {
  check(fn, () => ({ fn: (x) => x[fn](), inputs: [uni(0.5, 2, 3, 4)] }));
}
check('clamp', () => ({ fn: (x) => x.clamp(-0.5, 0.5), inputs: [rnd(3, 4)] }));
check('clamp tensor bounds', () => ({ fn: (x, lo, hi) => x.clamp(lo, hi), inputs: [rnd(3, 4), uni(-1, -0.5, 4), uni(0.5, 1, 3, 1)] }));
check('where', () => {
  const c = konst(2, 3).gt(0);
  return { fn: (a, b) => torch.where(c, a, b), inputs: [rnd(2, 3), rnd(3)] };
});
check('where scalar other', () => {
  const c = konst(2, 3).gt(0);
  return { fn: (a) => torch.where(c, a, 0.5), inputs: [rnd(2, 3)] };
});
check('lerp', () => ({ fn: (a, b, w) => a.lerp(b, w).add(a.lerp(b, 0.3)), inputs: [rnd(2, 3), rnd(2, 3), uni(0, 1, 3)] }));
check('addcmul addcdiv', () => ({
  fn: (x, t1, t2) => x.addcmul(t1, t2, 0.5).addcdiv(t1, t2, 2), inputs: [rnd(2, 3), rnd(2, 3), uni(0.5, 2, 3)],
}));

// ---------------------------------------------------------------- reductions
check('sum', () => ({ fn: (x) => [x.sum(), x.sum(1), x.sum([0, 2], true)], inputs: [rnd(2, 3, 4)] }));
check('mean', () => ({ fn: (x) => [x.mean(), x.mean(-1, true), x.mean([0, 1])], inputs: [rnd(2, 3, 4)] }));
check('var', () => ({
  fn: (x) => [x.var(), x.var(1), x.var([0, 2], { correction: 0, keepdim: true })], inputs: [rnd(2, 3, 4)],
}));
check('std', () => ({
  fn: (x) => [x.std(), x.std(1), x.std([0, 2], { correction: 0, keepdim: true })], inputs: [rnd(2, 3, 4)],
}));
check('max min', () => ({
  fn: (x) => [x.max(), x.min(), x.max(1)[0], x.min(-1, true)[0], x.amax([0, 1]), x.amin(2)], inputs: [rnd(2, 3, 4)],
}));
check('logsumexp', () => ({ fn: (x) => [x.logsumexp(1), x.logsumexp([0, 2], true)], inputs: [rnd(2, 3, 4)] }));
check('prod', () => ({ fn: (x) => x.prod(), inputs: [uni(0.5, 1.5, 2, 3)] }));
check('norm', () => ({ fn: (x) => [x.norm(), x.norm(1, 1), x.norm(3, [0, 2], true)], inputs: [rnd(2, 3, 4)] }));
check('cumsum', () => ({ fn: (x) => x.cumsum(1), inputs: [rnd(2, 3, 4)] }));
check('sort topk values', () => ({ fn: (x) => [x.sort(-1, true)[0], x.topk(2, 1)[0]], inputs: [rnd(2, 3, 4)] }));

// ---------------------------------------------------------------- linear algebra
check('matmul', () => ({ fn: (a, b) => a.matmul(b), inputs: [rnd(2, 3, 4), rnd(4, 2)] }));
check('matmul vector', () => ({ fn: (a, b) => [a.matmul(b), b.t().matmul(a)], inputs: [rnd(3), rnd(3, 2)] }));
check('mm bmm', () => ({ fn: (a, b, c) => [a.mm(b), c.bmm(b.unsqueeze(0).expand(2, 3, 2))], inputs: [rnd(2, 3), rnd(3, 2), rnd(2, 4, 3)] }));
check('baddbmm', () => ({ fn: (x, a, b) => x.baddbmm(a, b, 0.5, 2), inputs: [rnd(2, 3, 2), rnd(2, 3, 4), rnd(2, 4, 2)] }));
check('outer', () => ({ fn: (a, b) => a.outer(b), inputs: [rnd(3), rnd(4)] }));
check('linear', () => ({ fn: (x, w, b) => F.linear(x, w, b), inputs: [rnd(2, 3), rnd(4, 3), rnd(4)] }));
check('einsum', () => ({ fn: (a, b) => torch.einsum('bij,bjk->bik', a, b), inputs: [rnd(2, 2, 3), rnd(2, 3, 2)] }));

// ---------------------------------------------------------------- shape ops
check('reshape view permute transpose', () => ({
  fn: (x) => [x.reshape(4, -1), x.view(6, 4).mul(2), x.permute(2, 0, 1).contiguous(), x.transpose(0, 2)], inputs: [rnd(2, 3, 4)],
}));
check('flatten squeeze unsqueeze', () => ({
  fn: (x) => [x.flatten(1), x.unsqueeze(1).squeeze(1), x.squeeze()], inputs: [rnd(2, 1, 3)],
}));
check('expand', () => {
  const w = konst(2, 3, 4);
  return { fn: (x) => [x.expand(2, 3, 4).mul(w), x.expand(-1, 5)], inputs: [rnd(3, 1)] };
});
check('repeat', () => {
  const w = konst(2, 3, 6);
  return { fn: (x) => x.repeat(2, 1, 3).mul(w), inputs: [rnd(3, 2)] };
});
check('cat', () => ({ fn: (a, b, c) => torch.cat([a, b, c], 1), inputs: [rnd(2, 1, 3), rnd(2, 2, 3), rnd(2, 3, 3)] }));
check('stack', () => ({ fn: (a, b) => torch.stack([a, b, a.mul(b)], -1), inputs: [rnd(2, 3), rnd(2, 3)] }));
check('split', () => ({ fn: (x) => [...x.split(2, 1).map((p, k) => p.mul(k + 1)), ...x.split([1, 4], 1)], inputs: [rnd(2, 5)] }));
check('chunk', () => ({ fn: (x) => x.chunk(3, 1).map((p, k) => p.mul(k + 1).sum(1)), inputs: [rnd(2, 5)] }));
check('narrow flip roll', () => ({ fn: (x) => [x.narrow(1, 1, 3), x.flip([0, 1]), x.roll(2, 1)], inputs: [rnd(2, 5)] }));
check('tril triu', () => ({ fn: (x) => [x.tril(), x.triu(1)], inputs: [rnd(3, 4)] }));

// ---------------------------------------------------------------- indexing
check('slice select', () => ({ fn: (x) => [x.slice(1, 1, 4, 2), x.slice(0, 1), x.select(1, 2), x.select(0, -1)], inputs: [rnd(3, 5)] }));
check('index_select', () => ({ fn: (x) => x.indexSelect(1, ids([4, 0, 4, 2])), inputs: [rnd(3, 5)] }));
check('gather', () => ({ fn: (x) => x.gather(1, ids([0, 4, 4, 1, 2, 2], [3, 2])), inputs: [rnd(3, 5)] }));
check('scatter_add', () => ({
  fn: (x, src) => x.scatterAdd(1, ids([0, 4, 4, 1, 2, 2, 3, 0], [2, 4]), src), inputs: [rnd(2, 5), rnd(2, 4)],
}));
check('masked_fill', () => {
  const m = konst(3, 4).gt(0.2);
  return { fn: (x) => [x.maskedFill(m, -2), x.mul(2).maskedFill(m, torch.scalar(0.5, { dtype: 'float64' }))], inputs: [rnd(3, 4)] };
});
check('masked_select', () => {
  const m = konst(3, 4).gt(0);
  return { fn: (x) => x.maskedSelect(m), inputs: [rnd(3, 4)] };
});
check('advanced index', () => ({
  fn: (x) => [x.index([ids([0, 2, 2]), ids([4, 0, 4])]), x.index([null, ids([1, 1, 3])])], inputs: [rnd(3, 5)],
}));
check('index_put_', () => ({
  fn: (x, v) => [x.clone().indexPut_([ids([0, 2]), ids([4, 1])], v), x.clone().indexPut_([ids([1, 1])], v.unsqueeze(1).expand(2, 5), true)],
  inputs: [rnd(3, 5), rnd(2)],
}));

// ---------------------------------------------------------------- functional
check('layer_norm with weight and bias', () => ({
  fn: (x, w, b) => F.layerNorm(x, [4], w, b), inputs: [rnd(2, 3, 4), rnd(4), rnd(4)],
}));
check('layer_norm over 2 dims', () => ({ fn: (x, w) => F.layerNorm(x, [3, 4], w, null, 1e-3), inputs: [rnd(2, 3, 4), rnd(3, 4)] }));
check('group_norm with weight and bias', () => ({
  fn: (x, w, b) => F.groupNorm(x, 2, w, b), inputs: [rnd(2, 4, 2, 3), rnd(4), rnd(4)],
}));
check('gelu', () => ({ fn: (x) => F.gelu(x), inputs: [rnd(3, 4)] }));
check('gelu tanh', () => ({ fn: (x) => F.gelu(x, 'tanh'), inputs: [rnd(3, 4)] }));
check('silu', () => ({ fn: (x) => F.silu(x), inputs: [rnd(3, 4)] }));
check('softmax', () => ({ fn: (x) => [F.softmax(x, -1), F.softmax(x, 0)], inputs: [rnd(3, 4)] }));
check('log_softmax', () => ({ fn: (x) => [F.logSoftmax(x, -1), F.logSoftmax(x, 0)], inputs: [rnd(3, 4)] }));
check('conv2d', () => ({ fn: (x, w, b) => F.conv2d(x, w, b), inputs: [rnd(1, 2, 4, 4), rnd(3, 2, 3, 3), rnd(3)] }));
check('conv2d stride padding', () => ({
  fn: (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1 }), inputs: [rnd(1, 2, 5, 5), rnd(2, 2, 3, 3), rnd(2)],
}));
check('conv2d groups dilation', () => ({
  fn: (x, w) => F.conv2d(x, w, null, { groups: 2, padding: [1, 2], dilation: 2 }), inputs: [rnd(1, 4, 4, 4), rnd(4, 2, 2, 2)],
}));
check('conv_transpose2d', () => ({
  fn: (x, w, b) => F.convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1 }),
  inputs: [rnd(1, 2, 3, 3), rnd(2, 3, 3, 3), rnd(3)],
}));
check('conv_transpose2d groups', () => ({
  fn: (x, w) => F.convTranspose2d(x, w, null, { stride: 2, groups: 2 }), inputs: [rnd(1, 4, 2, 2), rnd(4, 1, 2, 2)],
}));
check('avg_pool2d', () => ({
  fn: (x) => [F.avgPool2d(x, 2), F.avgPool2d(x, 3, { stride: 2, padding: 1, ceilMode: true, countIncludePad: false })],
  inputs: [rnd(1, 2, 4, 5)],
}));
check('max_pool2d', () => ({
  fn: (x) => [F.maxPool2d(x, 2), F.maxPool2d(x, 3, { stride: 2, padding: 1 })], inputs: [rnd(1, 2, 4, 5)],
}));
check('adaptive_avg_pool2d', () => ({ fn: (x) => F.adaptiveAvgPool2d(x, [2, 3]), inputs: [rnd(1, 2, 4, 5)] }));
check('interpolate nearest', () => ({
  fn: (x) => [F.interpolate(x, { scaleFactor: 2 }), F.interpolate(x, { size: [5, 3] })], inputs: [rnd(1, 2, 2, 3)],
}));
check('interpolate bilinear', () => ({
  fn: (x) => F.interpolate(x, { size: [4, 5], mode: 'bilinear' }), inputs: [rnd(1, 2, 2, 3)],
}));
check('interpolate bilinear align_corners', () => ({
  fn: (x) => F.interpolate(x, { size: [4, 5], mode: 'bilinear', alignCorners: true }), inputs: [rnd(1, 2, 2, 3)],
}));
check('interpolate bicubic', () => ({
  fn: (x) => [F.interpolate(x, { size: [4, 5], mode: 'bicubic' }), F.interpolate(x, { scaleFactor: 1.5, mode: 'bicubic', alignCorners: true })],
  inputs: [rnd(1, 1, 3, 3)],
}));
check('pad', () => ({ fn: (x) => [F.pad(x, [1, 2], 0.5), F.pad(x, [-1, 0, 1, 1])], inputs: [rnd(1, 2, 3)] }));
check('embedding weight grad', () => ({
  fn: (w) => F.embedding(ids([1, 4, 1, 0, 2, 4], [2, 3]), w), inputs: [rnd(5, 3)],
}));
for (const reduction of ['none', 'mean', 'sum'] as const) {
  check(`mse_loss ${reduction}`, () => ({ fn: (a, b) => F.mseLoss(a, b, reduction), inputs: [rnd(3, 4), rnd(3, 4)] }));
  check(`l1_loss ${reduction}`, () => ({ fn: (a, b) => F.l1Loss(a, b, reduction), inputs: [rnd(3, 4), rnd(3, 4)] }));
}
check('attention', () => ({
  fn: (q, k, v) => F.scaledDotProductAttention(q, k, v), inputs: [rnd(1, 2, 3, 4), rnd(1, 2, 3, 4), rnd(1, 2, 3, 4)],
}));
check('attention bool mask', () => {
  const mask = torch.tensor([[true, false, true], [true, true, false], [true, false, false]], { dtype: 'bool' });
  return { fn: (q, k, v) => F.explicitAttention(q, k, v, { attnMask: mask }), inputs: [rnd(2, 3, 4), rnd(2, 3, 4), rnd(2, 3, 4)] };
});
check('attention causal', () => ({
  fn: (q, k, v) => F.explicitAttention(q, k, v, { isCausal: true, scale: 0.3 }), inputs: [rnd(2, 3, 4), rnd(2, 4, 4), rnd(2, 4, 2)],
}));
check('nn.Linear and nn.Conv2d parameters', () => {
  const lin = new torch.nn.Linear(4, 2);
  const conv = new torch.nn.Conv2d(1, 2, 2);
  lin.to({ dtype: 'float64' });
  conv.to({ dtype: 'float64' });
  const x = konst(1, 1, 3, 3);
  return {
    fn: (lw, lb, cw, cb) => F.linear(F.conv2d(x, cw, cb).flatten(2), lw, lb),
    inputs: [lin.weight, lin.bias!, conv.weight, conv.bias!],
  };
});

// ---------------------------------------------------------------- the checker itself
test('gradcheck fails on a deliberately wrong gradient', () => {
  torch.scope(() => {
    // d/dx (x * x) is 2x, but detaching one factor makes autograd report x.
    const x = rnd(2, 3);
    const result = torch.gradcheck((a) => a.mul(a.detach()), [x]);
    assert.equal(result.ok, false);
    assert.equal(result.mismatches, 6);
    assert.ok(result.details.length > 0 && result.maxError > 1e-3);
    const d = result.details[0];
    assert.equal(d.input, 0);
    assert.ok(Math.abs(d.numeric - 2 * d.analytic) < 1e-6, `numeric ${d.numeric} should be twice analytic ${d.analytic}`);
    assert.throws(() => torch.assertGradcheck((a) => a.mul(a.detach()), [x]), /gradcheck failed/);
    // The same function without the detach passes.
    assert.ok(torch.assertGradcheck((a) => a.mul(a), [x]).ok);
  });
});

test('gradcheck fails when part of the graph is disconnected', () => {
  torch.scope(() => {
    const a = rnd(3);
    const b = rnd(3);
    // b only reaches the output through a detached path: its analytic gradient is missing.
    const result = torch.gradcheck((p, q) => p.mul(2).add(q.detach().exp()), [a, b]);
    assert.equal(result.ok, false);
    assert.ok(result.details.every((d) => d.input === 1 && d.analytic === 0));
    // Completely detached output: no gradient at all, still a clean failure rather than a throw.
    assert.equal(torch.gradcheck((p) => p.detach().sin(), [a]).ok, false);
  });
});

test('gradcheck checks only inputs that require grad and leaves them unchanged', () => {
  torch.scope(() => {
    const x = rnd(2, 2);
    const c = konst(2, 2);
    const before = x.toArray();
    const result = torch.gradcheck((p, q) => p.mul(q).sin(), [x, c]);
    assert.ok(result.ok, result.message);
    assert.equal(result.checked, 4);
    assert.deepEqual(x.toArray(), before);
    assert.equal(x.grad, null, 'gradcheck does not accumulate into .grad');
    // Inside noGrad the analytic pass still records its graph.
    assert.ok(torch.noGrad(() => torch.gradcheck((p, q) => p.mul(q).sin(), [x, c])).ok);
  });
});

test('gradcheck handles non-contiguous and 0-d inputs', () => {
  torch.scope(() => {
    const base = rnd(3, 4);
    const t = torch.noGrad(() => base.detach().t()).requiresGrad_();
    assert.notDeepEqual(t.strides(), [3, 1]);
    const s = torch.scalar(0.7, { dtype: 'float64' }).requiresGrad_();
    const result = torch.gradcheck((a, k) => a.mul(k).exp(), [t, s]);
    assert.ok(result.ok, result.message);
    assert.equal(result.checked, 13);
  });
});

test('gradcheck rejects float32 inputs and inputs without requiresGrad', () => {
  torch.scope(() => {
    const x32 = torch.randn([2], { generator: G }).requiresGrad_();
    assert.throws(() => torch.gradcheck((a) => a.mul(2), [x32]), /float64/);
    assert.throws(() => torch.gradcheck((a) => a.mul(2), [konst(2)]), /requires grad/);
  });
});
