// Diff-Tuning timestep laws against the official code's distributions (shared dit-ref
// timesteps.json), the fork's formulas evaluated in numpy/torch (test/fixtures/tuning/refs.json,
// tools/make_tuning_refs.py), the paper's quoted means, and Monte Carlo checks whose tolerances
// come from the binomial / sample variances.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { readTimestepWeights, TimestepDistribution, TimestepLaw } from '../src/tuning/timesteps';
import { FIXTURES, skipUnless } from './helpers/dit-ref';

const T = 1000;
const REFS = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'tuning', 'refs.json'), 'utf8'));

interface LawRef { kind: 'noise-end' | 'data-end'; tau: number; mean: number; p_lt_100: number; p_ge_900: number; probs_at: number[] }

function sumRange(p: Float64Array, from: number, to: number): number {
  let s = 0;
  for (let t = from; t < to; t++) s += p[t];
  return s;
}

test('the paper\'s means: tau 1 → 666.0 / 333.0, tau 0 → 499.5, tau 0.5 → 599.3, tau 1.5 → 713.6', () => {
  const mean = (law: TimestepLaw) => TimestepDistribution.create(law, T).mean();
  assert.ok(Math.abs(mean({ kind: 'noise-end', tau: 1 }) - 666.0) < 1e-9);
  assert.ok(Math.abs(mean({ kind: 'data-end', tau: 1 }) - 333.0) < 1e-9);
  assert.ok(Math.abs(mean({ kind: 'noise-end', tau: 0 }) - 499.5) < 1e-9);
  assert.ok(Math.abs(mean({ kind: 'data-end', tau: 0 }) - 499.5) < 1e-9);
  assert.ok(Math.abs(mean({ kind: 'uniform' }) - 499.5) < 1e-9);
  assert.ok(Math.abs(mean({ kind: 'noise-end', tau: 0.5 }) - 599.3) < 0.05);
  assert.ok(Math.abs(mean({ kind: 'noise-end', tau: 1.5 }) - 713.6) < 0.05);
  // §3.2: P(t < 100) = 0.0101 and P(t >= 900) = 0.1899 for the tau = 1 target law.
  const p = TimestepDistribution.create({ kind: 'noise-end', tau: 1 }, T).probs;
  assert.ok(Math.abs(sumRange(p, 0, 100) - 0.0101) < 5e-5);
  assert.ok(Math.abs(sumRange(p, 900, T) - 0.1899) < 5e-5);
});

test('tau = 1 laws equal the official train.py distributions (dit-ref timesteps.json) to 1e-12',
  { skip: skipUnless(['timesteps.json'], 'timesteps.json') }, () => {
    const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'timesteps.json'), 'utf8'));
    for (const [name, kind] of [['target', 'noise-end'], ['replay', 'data-end']] as const) {
      const dist = TimestepDistribution.create({ kind, tau: ref.prob_scale }, T);
      const expected: number[] = ref[name].probs;
      assert.equal(dist.probs.length, expected.length);
      let maxErr = 0;
      for (let t = 0; t < T; t++) maxErr = Math.max(maxErr, Math.abs(dist.probs[t] - expected[t]));
      assert.ok(maxErr <= 1e-12, `${name}: max |p - ref| = ${maxErr}`);
      assert.ok(Math.abs(dist.mean() - ref[name].mean) <= 1e-9, `${name}: mean ${dist.mean()} vs ${ref[name].mean}`);
    }
  });

test('every power in the fork\'s formula (numpy float64): probabilities, means and tail masses', () => {
  const idx: number[] = REFS.prob_indices;
  for (const r of REFS.laws as LawRef[]) {
    const dist = TimestepDistribution.create({ kind: r.kind, tau: r.tau }, T);
    const what = `${r.kind} tau=${r.tau}`;
    let total = 0;
    for (const v of dist.probs) total += v;
    assert.ok(Math.abs(total - 1) < 1e-12, `${what}: sum ${total}`);
    idx.forEach((t, j) => assert.ok(Math.abs(dist.probs[t] - r.probs_at[j]) <= 1e-12 * r.probs_at[j],
      `${what}: p[${t}] = ${dist.probs[t]}, ref ${r.probs_at[j]}`));
    assert.ok(Math.abs(dist.mean() - r.mean) < 1e-9, `${what}: mean ${dist.mean()} vs ${r.mean}`);
    assert.ok(Math.abs(sumRange(dist.probs, 0, 100) - r.p_lt_100) < 1e-12, `${what}: P(t<100)`);
    assert.ok(Math.abs(sumRange(dist.probs, 900, T) - r.p_ge_900) < 1e-12, `${what}: P(t>=900)`);
  }
});

test('a user weight vector is normalised as given; uniform is flat', () => {
  const w: number[] = Array.from({ length: T }, (_, t) => (t % 10 === 0 ? 3 : t < 500 ? 1 : 0));
  const dist = TimestepDistribution.create({ kind: 'weights', weights: w }, T);
  const total = w.reduce((a, b) => a + b, 0);
  for (let t = 0; t < T; t++) assert.ok(Math.abs(dist.probs[t] - w[t] / total) < 1e-15);
  const flat = TimestepDistribution.create({ kind: 'uniform' }, 7);
  assert.equal(flat.numTimesteps, 7);
  for (const p of flat.probs) assert.ok(Math.abs(p - 1 / 7) < 1e-16);
  // Large powers neither overflow nor lose the top timestep.
  const steep = TimestepDistribution.create({ kind: 'noise-end', tau: 400 }, T);
  assert.ok(steep.probs.every(Number.isFinite));
  assert.ok(steep.probs[T - 1] > 0.3 && steep.probs[0] === 0);
  const huge = TimestepDistribution.create({ kind: 'weights', weights: new Array(T).fill(1e308) }, T);
  for (const p of huge.probs) assert.ok(Math.abs(p - 1 / T) < 1e-16);
});

test('draws are torch.multinomial\'s stream: equal to PyTorch for a seeded Generator and for the global one', () => {
  const r = REFS.draws;
  const dist = TimestepDistribution.create(r.law, T);
  const g = new torch.Generator('cpu', r.generator_seed);
  const fromGenerator = torch.scope(() => dist.sample(r.n, { generator: g }).toArray());
  assert.deepEqual(fromGenerator, r.from_generator);
  torch.manualSeed(r.global_seed);
  const fromGlobal = torch.scope(() => dist.sample(r.n).toArray());
  assert.deepEqual(fromGlobal, r.from_global);
});

test('seeded draws reproduce from the same generator state, and differ for another seed', () => {
  const dist = TimestepDistribution.create({ kind: 'data-end', tau: 1 }, T);
  torch.scope(() => {
    const g = new torch.Generator('cpu', 42);
    const state = g.getState();
    const a = dist.sample(500, { generator: g });
    assert.equal(a.dtype, 'int64');
    assert.deepEqual(a.shape, [500]);
    const b = dist.sample(500, { generator: g });
    g.setState(state);
    const again = dist.sample(500, { generator: g });
    assert.deepEqual(again.toArray(), a.toArray());
    assert.notDeepEqual(b.toArray(), a.toArray());
    const other = dist.sample(500, { generator: new torch.Generator('cpu', 43) });
    assert.notDeepEqual(other.toArray(), a.toArray());
    const fresh = dist.sample(500, { generator: new torch.Generator('cpu', 42) });
    assert.deepEqual(fresh.toArray(), a.toArray());
    assert.deepEqual(dist.sample(0, { generator: g }).shape, [0]);
  });
});

test('empirical frequencies of 200,000 draws match the law (per-bucket 5 sigma and chi-square)', () => {
  const n = 200_000;
  const buckets = 20;
  const width = T / buckets;
  for (const law of [{ kind: 'noise-end', tau: 1 }, { kind: 'data-end', tau: 1.5 }] as const) {
    const dist = TimestepDistribution.create(law, T);
    const draws = torch.scope(() => dist.sample(n, { generator: new torch.Generator('cpu', 2024) }).toArray());
    const counts = new Float64Array(buckets);
    for (const t of draws) {
      assert.ok(Number.isInteger(t) && t >= 0 && t < T, `draw ${t} outside 0..${T - 1}`);
      counts[Math.floor(t / width)] += 1;
    }
    let chi2 = 0;
    for (let b = 0; b < buckets; b++) {
      // Expected mass from the closed form, not from dist.probs.
      let mass = 0;
      let norm = 0;
      for (let t = 0; t < T; t++) {
        const w = law.kind === 'noise-end' ? Math.pow(t + 1, law.tau) : Math.pow(T - t, law.tau);
        norm += w;
        if (Math.floor(t / width) === b) mass += w;
      }
      const p = mass / norm;
      const sd = Math.sqrt(n * p * (1 - p));
      assert.ok(Math.abs(counts[b] - n * p) <= 5 * sd, `${law.kind}: bucket ${b} has ${counts[b]}, expected ${n * p} ± ${sd}`);
      chi2 += (counts[b] - n * p) ** 2 / (n * p);
    }
    assert.ok(chi2 < REFS['chi2_19_isf_1e-6'], `${law.kind}: chi-square ${chi2} (19 dof)`);
  }
});

test('weighting mode equals sampling mode in expectation (Monte Carlo, tolerance from the variances)', () => {
  const n = 200_000;
  // Target law tau = 1 in closed form: p[t] = (t+1) / (T(T+1)/2).
  const p = (t: number) => (t + 1) / ((T * (T + 1)) / 2);
  const dist = TimestepDistribution.create({ kind: 'noise-end', tau: 1 }, T);
  const fs_: [string, (t: number) => number][] = [['t/T', (t) => t / T], ['1[t < 100]', (t) => (t < 100 ? 1 : 0)], ['cos', (t) => Math.cos(t / 97)]];
  const { uniform, weights, sampled } = torch.scope(() => {
    const u = torch.randint(0, T, [n], { generator: new torch.Generator('cpu', 7) });
    return {
      uniform: u.toArray(),
      weights: dist.lossWeights(u).toArray(),
      sampled: dist.sample(n, { generator: new torch.Generator('cpu', 8) }).toArray(),
    };
  });
  uniform.forEach((t, i) => assert.equal(weights[i], Math.fround(T * p(t))));
  for (const [name, f] of fs_) {
    let exact = 0;
    let secondUniform = 0;
    let secondP = 0;
    for (let t = 0; t < T; t++) {
      exact += p(t) * f(t);
      secondUniform += (T * p(t) * f(t)) ** 2 / T;
      secondP += p(t) * f(t) ** 2;
    }
    const varWeighted = secondUniform - exact ** 2;
    const varSampled = secondP - exact ** 2;
    let weighted = 0;
    for (let i = 0; i < n; i++) weighted += weights[i] * f(uniform[i]);
    weighted /= n;
    let direct = 0;
    for (const t of sampled) direct += f(t);
    direct /= n;
    assert.ok(Math.abs(weighted - exact) <= 5 * Math.sqrt(varWeighted / n), `${name}: weighted ${weighted} vs exact ${exact}`);
    assert.ok(Math.abs(direct - exact) <= 5 * Math.sqrt(varSampled / n), `${name}: sampled ${direct} vs exact ${exact}`);
    assert.ok(Math.abs(weighted - direct) <= 5 * Math.sqrt((varWeighted + varSampled) / n), `${name}: weighted ${weighted} vs sampled ${direct}`);
  }
});

test('lossWeights keeps t\'s shape, is float32, and is 1 for the uniform law', () => {
  torch.scope(() => {
    const t = torch.tensor([[0, 999], [500, 1]], { dtype: 'int64' });
    const w = TimestepDistribution.create({ kind: 'uniform' }, T).lossWeights(t);
    assert.equal(w.dtype, 'float32');
    assert.deepEqual(w.shape, [2, 2]);
    assert.deepEqual(w.toArray(), [1, 1, 1, 1]);
    const replay = TimestepDistribution.create({ kind: 'data-end', tau: 1 }, T).lossWeights(t).toArray();
    const norm = (T * (T + 1)) / 2;
    assert.deepEqual(replay, [0, 999, 500, 1].map((k) => Math.fround((T * (T - k)) / norm)));
  });
});

test('bad laws are refused with the field named and what was expected', () => {
  const field = 'objective.timesteps.target';
  const bad: [unknown, number, RegExp][] = [
    [{ kind: 'noise-end', tau: -1 }, T, /^objective\.timesteps\.target: expected the power tau of the noise-end law as a finite number >= 0 .*got -1.*other kind/],
    [{ kind: 'data-end', tau: Number.NaN }, T, /^objective\.timesteps\.target: expected the power tau of the data-end law .*got NaN/],
    [{ kind: 'noise-end', tau: Infinity }, T, /^objective\.timesteps\.target: .*got Infinity/],
    [{ kind: 'noise-end' }, T, /^objective\.timesteps\.target: .*got undefined/],
    [{ kind: 'noise-end', tau: '1' }, T, /^objective\.timesteps\.target: .*got "1"/],
    [{ kind: 'linear' }, T, /^objective\.timesteps\.target: expected a timestep law of kind 'uniform', 'noise-end', 'data-end', 'weights', got kind "linear"/],
    [{ kind: 'uniform' }, 0, /^objective\.timesteps\.target: the number of timesteps must be a positive integer, got 0/],
    [{ kind: 'weights', weights: [1, 2] }, T, /^objective\.timesteps\.target: expected 1000 weights .*got 2/],
    [{ kind: 'weights', weights: new Array(T).fill(0) }, T, /^objective\.timesteps\.target: the weights sum to 0/],
    [{ kind: 'weights', weights: [...new Array(T - 1).fill(1), -2] }, T, /^objective\.timesteps\.target\[999\]: expected a finite number >= 0, got -2/],
    [{ kind: 'weights', weights: [Number.NaN, ...new Array(T - 1).fill(1)] }, T, /^objective\.timesteps\.target\[0\]: .*got NaN/],
    [{ kind: 'weights', weights: [1, 2], source: 'w.json' }, T, /^objective\.timesteps\.target \(from w\.json\): expected 1000/],
    [{ kind: 'weights', weights: 5 }, T, /^objective\.timesteps\.target: expected an array of 1000 weights/],
  ];
  for (const [law, n, re] of bad) {
    assert.throws(() => TimestepDistribution.create(law as TimestepLaw, n, field),
      (e: Error) => re.test(e.message), JSON.stringify(law));
  }
  const dist = TimestepDistribution.create({ kind: 'uniform' }, T);
  assert.throws(() => dist.sample(-1), /n must be a non-negative integer/);
  assert.throws(() => dist.sample(2.5), /n must be a non-negative integer/);
  assert.throws(() => torch.scope(() => dist.lossWeights(torch.tensor([0.5]))), /integer tensor, got float32/);
});

test('readTimestepWeights reads a JSON array of T weights and names the file in every error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-tsw-'));
  try {
    const write = (name: string, text: string) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, text);
      return file;
    };
    const good = write('good.json', JSON.stringify([0, 1, 2, 3.5]));
    assert.deepEqual([...readTimestepWeights(good, 4)], [0, 1, 2, 3.5]);
    const dist = TimestepDistribution.create({ kind: 'weights', weights: readTimestepWeights(good, 4), source: good }, 4);
    assert.deepEqual([...dist.probs], [0, 1 / 6.5, 2 / 6.5, 3.5 / 6.5]);
    const cases: [string, string, RegExp][] = [
      ['short.json', '[1, 2, 3]', /expected 4 weights .*got 3/],
      ['object.json', '{"weights": [1, 2, 3, 4]}', /expected a JSON array of 4 timestep weights .*got an object/],
      ['broken.json', '[1, 2,', /not valid JSON/],
      ['negative.json', '[1, 2, -3, 4]', /\[2\]: expected a finite number >= 0, got -3/],
      ['string.json', '[1, 2, "3", 4]', /\[2\]: expected a finite number >= 0, got "3"/],
      ['zeros.json', '[0, 0, 0, 0]', /the weights sum to 0/],
    ];
    for (const [name, text, re] of cases) {
      const file = write(name, text);
      assert.throws(() => readTimestepWeights(file, 4), (e: Error) => e.message.startsWith(file) && re.test(e.message), name);
    }
    const missing = path.join(dir, 'missing.json');
    assert.throws(() => readTimestepWeights(missing, 4), (e: Error) => e.message.startsWith(`${missing}: cannot read the timestep weights`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
