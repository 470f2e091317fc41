import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';

const refs = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'optim', 'refs.json'), 'utf8'));

type Make = (params: Tensor[]) => torch.optim.Optimizer<any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function setup(init: { w: number[]; b: number[]; x: number[]; y: number[] }) {
  const w = torch.tensor(init.w, { dtype: 'float64' }).reshape(4, 3).requiresGrad_();
  const b = torch.tensor(init.b, { dtype: 'float64' }).requiresGrad_();
  const x = torch.tensor(init.x, { dtype: 'float64' }).reshape(8, 3);
  const y = torch.tensor(init.y, { dtype: 'float64' }).reshape(8, 4);
  return { w, b, x, y };
}

function train(p: ReturnType<typeof setup>, opt: torch.optim.Optimizer<any>, steps: number, clip?: number): number[] { // eslint-disable-line @typescript-eslint/no-explicit-any
  const norms: number[] = [];
  for (let i = 0; i < steps; i++) {
    torch.scope(() => {
      opt.zeroGrad();
      const loss = p.x.matmul(p.w.t()).add(p.b).sub(p.y).pow(2).mean();
      loss.backward();
      if (clip !== undefined) norms.push(torch.optim.clipGradNorm_([p.w, p.b], clip));
      opt.step();
    });
  }
  return norms;
}

function close(actual: number[], expected: number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    assert.ok(err <= tol * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]} (err ${err})`);
  }
}

const makers: Record<string, Make> = {
  adamw: (ps) => new torch.optim.AdamW(ps, { lr: 0.05, weightDecay: 0.1 }),
  adam_l2: (ps) => new torch.optim.Adam(ps, { lr: 0.05, weightDecay: 0.1 }),
  adam_amsgrad: (ps) => new torch.optim.Adam(ps, { lr: 0.05, amsgrad: true }),
  sgd_momentum: (ps) => new torch.optim.SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 }),
  sgd_nesterov: (ps) => new torch.optim.SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true }),
  adamw_clip: (ps) => new torch.optim.AdamW(ps, { lr: 0.05, weightDecay: 0 }),
};

for (const [name, make] of Object.entries(makers)) {
  test(`${name} follows torch.optim's trajectory (float64)`, () => {
    const ref = refs.cases[name];
    const p = setup(ref.init);
    const norms = train(p, make([p.w, p.b]), refs.steps, name === 'adamw_clip' ? 0.5 : undefined);
    close(p.w.toArray(), ref.w, 1e-12, `${name} w`);
    close(p.b.toArray(), ref.b, 1e-12, `${name} b`);
    close(norms, ref.norms, 1e-12, `${name} grad norms`);
  });
}

for (const name of ['adamw', 'sgd_momentum', 'adam_amsgrad']) {
  test(`${name}: save state, load into a new optimizer, continue = uninterrupted run, bit for bit`, () => {
    const ref = refs.cases[name];
    const straight = setup(ref.init);
    train(straight, makers[name]([straight.w, straight.b]), 6);

    const first = setup(ref.init);
    const opt1 = makers[name]([first.w, first.b]);
    train(first, opt1, 3);
    const saved = opt1.stateDict();
    // Copy everything out, as a checkpoint would, then rebuild params and optimizer from scratch.
    const copies = new Map([...saved.state].map(([i, s]) => [i, { step: s.step, tensors: new Map([...s.tensors].map(([k, t]) => [k, t.clone()])) }]));
    const resumed = setup(ref.init);
    torch.noGrad(() => { resumed.w.copy_(first.w); resumed.b.copy_(first.b); });
    const opt2 = makers[name]([resumed.w, resumed.b]);
    opt2.loadStateDict({ state: copies, paramGroups: saved.paramGroups });
    train(resumed, opt2, 3);
    assert.deepEqual(resumed.w.toArray(), straight.w.toArray());
    assert.deepEqual(resumed.b.toArray(), straight.b.toArray());
  });
}

test('parameter groups keep their own lr and weight decay', () => {
  const a = torch.ones([2]).requiresGrad_();
  const b = torch.ones([2]).requiresGrad_();
  const opt = new torch.optim.SGD([{ params: [a], options: { lr: 0.5 } }, { params: [b] }], { lr: 0.1 });
  a.sum().backward();
  b.sum().backward();
  opt.step();
  assert.deepEqual(a.toArray(), [0.5, 0.5]);
  assert.deepEqual(b.toArray().map((v) => Math.round(v * 1e6) / 1e6), [0.9, 0.9]);
  assert.throws(() => opt.addParamGroup([a]), /more than one parameter group/);
});

test('loading a state for different parameters fails clearly', () => {
  const a = torch.ones([2]).requiresGrad_();
  const opt = new torch.optim.AdamW([a]);
  a.sum().backward();
  opt.step();
  const other = new torch.optim.AdamW([torch.ones([3]).requiresGrad_()]);
  assert.throws(() => other.loadStateDict(opt.stateDict()), /shape \[2\], parameter has \[3\]/);
});
