// Autograd entry points (backward with a gradient, noGrad, detach, zeroGrad, higher-order
// grad) and native errors surfacing as JS Errors that carry libtorch's message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';

function f64(values: number[], shape?: number[]): Tensor {
  return torch.tensor(values, { dtype: 'float64' }).reshape(shape ?? [values.length]);
}

function close(actual: number[], expected: number[], tol = 1e-12): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, k) => assert.ok(Math.abs(a - expected[k]) <= tol, `element ${k}: ${a} vs ${expected[k]}`));
}

test('backward with a given gradient', () => {
  torch.scope(() => {
    const x = f64([1, -2, 3, 0.5, 4, -1], [2, 3]).requiresGrad_();
    const g = f64([1, 2, 3, -1, 0.5, 0], [2, 3]);
    const y = x.mul(x); // dy/dx = 2x, so x.grad = 2x * g
    y.backward(g);
    close(x.grad!.toArray(), [2, -8, 18, -1, 4, -0]);
    // Non-scalar outputs need a gradient, as in PyTorch.
    assert.throws(() => x.mul(2).backward(), /grad can be implicitly created only for scalar outputs/);
    // The free function takes one gradient per output, and accumulates.
    const z = x.sum();
    const w = x.pow(2).sum();
    torch.backward([z, w], [f64([2], []), null]);
    close(x.grad!.toArray(), [2, -8, 18, -1, 4, 0].map((v, k) => v + 2 + 2 * [1, -2, 3, 0.5, 4, -1][k]));
  });
});

test('gradients accumulate until zeroGrad, and grad can be cleared', () => {
  torch.scope(() => {
    const lin = new torch.nn.Linear(3, 2);
    const x = torch.ones([4, 3]);
    lin.forward(x).sum().backward();
    const first = lin.weight.grad!.toArray();
    lin.forward(x).sum().backward();
    close(lin.weight.grad!.toArray(), first.map((v) => 2 * v), 1e-6);
    lin.zeroGrad();
    assert.equal(lin.weight.grad, null);
    assert.equal(lin.bias!.grad, null);
    const opt = new torch.optim.SGD(lin.parameters(), { lr: 0.1 });
    lin.forward(x).sum().backward();
    close(lin.weight.grad!.toArray(), first, 1e-6);
    opt.zeroGrad();
    assert.equal(lin.weight.grad, null);
    const p = f64([1, 2]).requiresGrad_();
    p.mul(3).sum().backward();
    close(p.grad!.toArray(), [3, 3]);
    p.grad = null;
    assert.equal(p.grad, null);
  });
});

test('noGrad records nothing and restores the mode, even when fn throws', () => {
  torch.scope(() => {
    const x = f64([1, 2]).requiresGrad_();
    assert.equal(torch.isGradEnabled(), true);
    const y = torch.noGrad(() => {
      assert.equal(torch.isGradEnabled(), false);
      // enableGrad nests inside noGrad.
      const inner = torch.enableGrad(() => x.mul(2));
      assert.equal(inner.requiresGrad, true);
      return x.mul(2);
    });
    assert.equal(y.requiresGrad, false);
    assert.equal(y.gradFn, null);
    assert.equal(torch.isGradEnabled(), true);
    assert.throws(() => torch.noGrad(() => {
      throw new Error('inside');
    }), /inside/);
    assert.equal(torch.isGradEnabled(), true);
    // In-place updates of a leaf are allowed under noGrad (what optimizers do).
    torch.noGrad(() => x.add_(1));
    close(x.toArray(), [2, 3]);
    assert.throws(() => x.add_(1), /leaf Variable that requires grad/);
  });
});

test('detach shares memory and cuts the graph', () => {
  torch.scope(() => {
    const x = f64([1, 2, 3]).requiresGrad_();
    const d = x.detach();
    assert.equal(d.requiresGrad, false);
    assert.ok(d.sharesStorageWith(x));
    x.mul(d).sum().backward(); // only the first factor is differentiated: grad = d = x
    close(x.grad!.toArray(), [1, 2, 3]);
    const y = x.mul(2);
    assert.ok(y.gradFn !== null);
    assert.equal(y.detach().gradFn, null);
    assert.equal(y.isLeaf, false);
    assert.equal(y.detach().isLeaf, true);
  });
});

test('autograd.grad with createGraph gives second derivatives: d2/dx2 x^3 = 6x', () => {
  torch.scope(() => {
    const x = f64([2, -0.5, 3]).requiresGrad_();
    const y = x.pow(3).sum();
    const [dy] = torch.grad([y], [x], undefined, { createGraph: true });
    assert.ok(dy);
    close(dy.toArray(), [12, 0.75, 27]); // 3x^2
    assert.equal(dy.requiresGrad, true);
    const [d2y] = torch.grad([dy.sum()], [x]);
    close(d2y!.toArray(), [12, -3, 18]); // 6x
    // grad returns gradients without touching .grad.
    assert.equal(x.grad, null);
    // Third derivative through backward(createGraph): 6 everywhere.
    const [g1] = torch.grad([x.pow(3).sum()], [x], undefined, { createGraph: true });
    const [g2] = torch.grad([g1!.sum()], [x], undefined, { createGraph: true });
    g2!.sum().backward();
    close(x.grad!.toArray(), [6, 6, 6]);
  });
});

test('autograd.grad: unused inputs and allowUnused', () => {
  torch.scope(() => {
    const a = f64([1]).requiresGrad_();
    const b = f64([2]).requiresGrad_();
    assert.throws(() => torch.grad([a.mul(3).sum()], [a, b]), /One of the differentiated Tensors appears to not have been used/);
    const [ga, gb] = torch.grad([a.mul(3).sum()], [a, b], undefined, { allowUnused: true });
    close(ga!.toArray(), [3]);
    assert.equal(gb, null);
  });
});

test('backward twice without retainGraph is a JS error; retainGraph allows it', () => {
  torch.scope(() => {
    const x = f64([1, 2, 3]).requiresGrad_();
    const y = x.mul(x).sum();
    y.backward();
    assert.throws(() => y.backward(), (e: unknown) => e instanceof Error && /backward through the graph a second time/.test(e.message));
    // The process and the tensors are fine afterwards.
    close(x.grad!.toArray(), [2, 4, 6]);
    const z = x.mul(x).sum();
    z.backward(undefined, { retainGraph: true });
    z.backward();
    close(x.grad!.toArray(), [2 + 4, 4 + 8, 6 + 12]);
    const [g] = torch.grad([x.exp().sum()], [x]);
    close(g!.toArray(), [1, 2, 3].map(Math.exp));
  });
});

test('backward on a tensor that does not require grad is a JS error', () => {
  torch.scope(() => {
    assert.throws(() => torch.ones([2]).sum().backward(), /does not require grad/);
  });
});

test('native errors: matmul shape mismatch', () => {
  torch.scope(() => {
    assert.throws(() => torch.ones([2, 3]).matmul(torch.ones([4, 5])),
      (e: unknown) => e instanceof Error && /mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)/.test(e.message));
    assert.throws(() => torch.ones([2, 3, 4]).bmm(torch.ones([2, 5, 4])), /Expected size for first two dimensions|must match|size/);
    assert.throws(() => torch.ones([2, 3]).add(torch.ones([4])), /size of tensor a \(3\) must match the size of tensor b \(4\)/);
    assert.throws(() => torch.ones([6]).view(4), /shape '\[4\]' is invalid for input of size 6/);
  });
});

test('native errors: wrong dtype', () => {
  torch.scope(() => {
    const i = torch.ones([2, 2], { dtype: 'int64' });
    assert.throws(() => i.matmul(torch.ones([2, 2])), (e: unknown) => e instanceof Error && /expected scalar type|dtype/i.test(e.message));
    assert.throws(() => torch.ones([3]).indexSelect(0, torch.ones([2])), /index_select|IntTensor|LongTensor|Long/);
    assert.throws(() => torch.ones([3], { dtype: 'int64' }).requiresGrad_(), /floating point|complex/);
  });
});

test('native errors: an impossible allocation throws and the process survives', () => {
  torch.scope(() => {
    // 1e17 float32 elements is 400 PB: beyond any address space, so even overcommit refuses.
    assert.throws(() => torch.empty([1e17]), (e: unknown) => e instanceof Error && /allocate/i.test(e.message));
    assert.throws(() => torch.zeros([1e9, 1e9]), /allocate/i);
    // Negative sizes are rejected before allocating.
    assert.throws(() => torch.empty([-1]), /negative/i);
    // Still working.
    assert.deepEqual(torch.ones([2]).add(1).toArray(), [2, 2]);
  });
});

test('argument errors from the dispatcher name the op and argument', () => {
  torch.scope(() => {
    const x = torch.ones([2]);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    assert.throws(() => (x as any).add('nope'), /add\.Scalar: argument 'other' expected a number/);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    assert.throws(() => x.reshape(['a' as any]), /reshape: argument 'shape' expected an integer|reshape/);
  });
});

test('unbind returns the slices along a dim as views', () => {
  const x = torch.arange(6, undefined, 1, { dtype: 'float32' }).reshape(2, 3);
  const parts = x.unbind(1);
  assert.equal(parts.length, 3);
  assert.deepEqual(parts.map((p) => p.toArray()), [[0, 3], [1, 4], [2, 5]]);
  assert.ok(parts[0].sharesStorageWith(x));
});
