// splitIndices: disjoint, covering, sized as asked, a function of the seed only.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { splitIndices } from '../src/data/split';

test('train and eval are disjoint, sorted, cover 0..n-1, and eval has the asked size', () => {
  for (const [n, o] of [[100, { evalCount: 10 }], [37, { evalFraction: 0.25 }], [5, { evalCount: 0 }], [5, { evalCount: 5 }], [0, { evalFraction: 0.5 }]] as const) {
    const { train, eval: ev } = splitIndices(n, { ...o, seed: 1 });
    const k = 'evalCount' in o ? o.evalCount : Math.round(o.evalFraction * n);
    assert.equal(ev.length, k);
    assert.equal(train.length, n - k);
    assert.deepEqual([...train, ...ev].sort((a, b) => a - b), [...Array(n).keys()]);
    assert.deepEqual(train, [...train].sort((a, b) => a - b));
    assert.deepEqual(ev, [...ev].sort((a, b) => a - b));
  }
  assert.equal(splitIndices(37, { evalFraction: 0.25, seed: 0 }).eval.length, 9); // round(9.25)
});

test('deterministic by seed; another seed picks another eval set; a smaller eval set nests in a larger', () => {
  const a = splitIndices(200, { evalCount: 20, seed: 7 });
  assert.deepEqual(splitIndices(200, { evalCount: 20, seed: 7 }), a);
  assert.notDeepEqual(splitIndices(200, { evalCount: 20, seed: 8 }).eval, a.eval);
  assert.notDeepEqual(a.eval, [...Array(20).keys()], 'not simply the first 20');
  const small = splitIndices(200, { evalCount: 5, seed: 7 }).eval;
  assert.ok(small.every((i) => a.eval.includes(i)));
});

test('bad arguments are refused', () => {
  assert.throws(() => splitIndices(10, { seed: 0 }), /exactly one of evalCount and evalFraction/);
  assert.throws(() => splitIndices(10, { evalCount: 1, evalFraction: 0.1, seed: 0 }), /exactly one/);
  assert.throws(() => splitIndices(10, { evalCount: 11, seed: 0 }), /evalCount must be an integer in 0..10/);
  assert.throws(() => splitIndices(10, { evalFraction: 1.5, seed: 0 }), /evalFraction must be in \[0, 1\]/);
  assert.throws(() => splitIndices(-1, { evalCount: 0, seed: 0 }), /n must be/);
  assert.throws(() => splitIndices(10, { evalCount: 1, seed: NaN }), /seed/);
});
