// Fréchet distance, KID and precision/recall against scipy/numpy references (tools/make_metric_refs.py), the
// pytorch-fid fixture (shared/fixtures/dit-ref/fid.safetensors) and closed forms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { featureStats, FeatureStats } from '../src/eval/feature-stats';
import { frechetDistance, traceSqrtProduct } from '../src/eval/frechet';
import { kid } from '../src/eval/kid';
import { precisionRecall } from '../src/eval/precision-recall';

const HERE = path.join(__dirname, '..', '..', 'test', 'fixtures', 'eval');
const DIT_REF = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'dit-ref', 'fid.safetensors');
const refs = JSON.parse(fs.readFileSync(path.join(HERE, 'refs.json'), 'utf8'));
const features = torch.loadSafetensors(path.join(HERE, 'features.safetensors'));
for (const t of features.values()) t.keep();

function feat(name: string): Tensor {
  const t = features.get(name);
  if (!t) throw new Error(`fixture tensor '${name}' is missing`);
  return t;
}
/** A stored feature set; the d = 2048 ones are int8 codes times a power of two (exact in float64). */
const wideSets = new Map<string, Tensor>();
function fdSet(fdCase: string, side: 'a' | 'b'): Tensor {
  if (fdCase !== 'wide') return feat(`${fdCase}.${side}`);
  if (!wideSets.has(side)) wideSets.set(side, feat(`wide.${side}_codes`).double().mul(refs.wide_scale).keep());
  return wideSets.get(side)!;
}
const statsCache = new Map<string, FeatureStats>();
function statsOf(fdCase: string, side: 'a' | 'b'): FeatureStats {
  const key = `${fdCase}.${side}`;
  if (!statsCache.has(key)) statsCache.set(key, featureStats(fdSet(fdCase, side)));
  return statsCache.get(key)!;
}
function sumSquaredDiff(x: Float64Array, y: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i] - y[i]) ** 2;
  return s;
}
function rel(a: number, ref: number): number {
  return Math.abs(a - ref) / Math.abs(ref);
}
function maxRel(a: Float64Array, ref: Float64Array): number {
  assert.equal(a.length, ref.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - ref[i]));
    den = Math.max(den, Math.abs(ref[i]));
  }
  return num / den;
}
function f64(name: string): Float64Array {
  return feat(name).data() as Float64Array;
}
function trace(s: FeatureStats): number {
  let t = 0;
  for (let i = 0; i < s.dim; i++) t += s.sigma[i * s.dim + i];
  return t;
}
function stats(mu: number[], sigma: number[][], count = 10): FeatureStats {
  return { mu: Float64Array.from(mu), sigma: Float64Array.from(sigma.flat()), count, dim: mu.length };
}

test('featureStats: float64 mean and n-1 covariance equal numpy (np.mean, np.cov rowvar=False)', () => {
  for (const c of ['full', 'small']) {
    for (const side of ['a', 'b'] as const) {
      const s = featureStats(feat(`${c}.${side}`));
      assert.equal(s.count, feat(`${c}.${side}`).size(0));
      assert.ok(maxRel(s.mu, f64(`${c}.mu_${side}`)) < 1e-12, `${c}.${side} mu`);
      assert.ok(maxRel(s.sigma, f64(`${c}.sigma_${side}`)) < 1e-12, `${c}.${side} sigma`);
    }
  }
  const wide = featureStats(fdSet('wide', 'b'));
  assert.equal(wide.dim, 2048);
  assert.ok(rel(trace(wide), refs.fd.wide.trace_b) < 1e-12);
  assert.ok(rel(wide.mu.reduce((s, v) => s + v, 0), refs.fd.wide.mu_b_sum) < 1e-12);
});

test('featureStats: float32 input is accumulated in float64, across row blocks, far from the origin', () => {
  // 5,000 rows (two blocks of 4,096) of x_i = 1e4 + (i mod 7) in one column, (i mod 3) - 1 in the other:
  // closed-form mean and covariance; float32 accumulation or the one-pass E[xx] - mu^2 would lose them.
  const n = 5000;
  const data = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) { data[2 * i] = 1e4 + (i % 7); data[2 * i + 1] = (i % 3) - 1; }
  const s = featureStats(torch.fromTypedArray(data, [n, 2]));
  const moments = (f: (i: number) => number, g: (i: number) => number): number[] => {
    let mf = 0; let mg = 0;
    for (let i = 0; i < n; i++) { mf += f(i); mg += g(i); }
    mf /= n; mg /= n;
    let c = 0;
    for (let i = 0; i < n; i++) c += (f(i) - mf) * (g(i) - mg);
    return [mf, mg, c / (n - 1)];
  };
  const x = (i: number): number => i % 7;
  const y = (i: number): number => (i % 3) - 1;
  const [mx, my, cxy] = moments(x, y);
  assert.ok(rel(s.mu[0], 1e4 + mx) < 1e-14 && Math.abs(s.mu[1] - my) < 1e-14);
  assert.ok(rel(s.sigma[0], moments(x, x)[2]) < 1e-12);
  assert.ok(rel(s.sigma[3], moments(y, y)[2]) < 1e-12);
  assert.ok(Math.abs(s.sigma[1] - cxy) < 1e-12 && s.sigma[1] === s.sigma[2]);
});

test('featureStats: bad input is refused with the reason', () => {
  assert.throws(() => featureStats(torch.zeros([1, 4])), /at least 2 feature vectors, got 1/);
  assert.throws(() => featureStats(torch.zeros([4])), /shape \[n, d\], got \[4\]/);
  assert.throws(() => featureStats(torch.zeros([3, 4], { dtype: 'int64' })), /floating features, got int64/);
  assert.throws(() => featureStats(torch.tensor([[1, 2], [NaN, 0]])), /NaN or infinite/);
});

test('frechetDistance matches scipy (pytorch-fid formula) and the feature-space value, n > d, n < d and d = 2048', () => {
  for (const c of ['full', 'small', 'wide']) {
    const r = refs.fd[c];
    const a = statsOf(c, 'a');
    const b = statsOf(c, 'b');
    const fd = frechetDistance(a, b);
    // fd_from_features takes no square root of a singular matrix (nuclear norm of A B^T): float64-exact.
    assert.ok(rel(fd, r.fd_from_features) < 1e-9, `${c}: ${fd} vs ${r.fd_from_features}`);
    // scipy's sqrtm of the singular 2048 x 2048 product is itself 1.7e-6 off the two exact forms above
    // (which agree to 1e-13), so that one case gets scipy's own error as its margin.
    const scipyTol = c === 'wide' ? 3e-6 : 1e-6;
    assert.ok(rel(fd, r.fd_scipy) < scipyTol, `${c}: ${fd} vs scipy ${r.fd_scipy}`);
    assert.equal(r.scipy_eps_fallback, false);
    // frechetDistance decomposed the smaller set's covariance (b); the other order gives the same trace.
    const exactCross = (r.trace_a + r.trace_b + sumSquaredDiff(a.mu, b.mu) - r.fd_from_features) / 2;
    assert.ok(rel(traceSqrtProduct(a.sigma, b.sigma, a.dim), exactCross) < 1e-9, `${c}: tr sqrt(S1 S2) from S1`);
  }
  assert.ok(refs.fd.small.rank_a < refs.fd.small.dim && refs.fd.wide.rank_a === 299, 'the n < d cases are singular');
});

test('frechetDistance matches the dit-ref pytorch-fid fixture', { skip: fs.existsSync(DIT_REF) ? false : `${DIT_REF} is absent` }, () => {
  const ref = torch.loadSafetensors(DIT_REF);
  for (const pair of ['pair1', 'pair2']) {
    const a = featureStats(ref.get(`${pair}.features1`)!);
    const b = featureStats(ref.get(`${pair}.features2`)!);
    assert.ok(maxRel(a.mu, ref.get(`${pair}.mu1`)!.data() as Float64Array) < 1e-12);
    assert.ok(maxRel(b.sigma, ref.get(`${pair}.sigma2`)!.data() as Float64Array) < 1e-12);
    const fd = frechetDistance(a, b);
    assert.ok(rel(fd, ref.get(`${pair}.fid`)!.item()) < 1e-6, `${pair}: ${fd}`);
    // fid_eigh clips but does not truncate round-off eigenvalues, which puts it 1.5e-8 below our pair2 value.
    assert.ok(rel(fd, ref.get(`${pair}.fid_eigh`)!.item()) < 1e-7, `${pair}: ${fd} vs eigh`);
  }
  for (const t of ref.values()) t.dispose();
});

test('frechetDistance: closed forms (itself, a shifted copy, commuting singular covariances) and symmetry', () => {
  for (const c of ['full', 'small', 'wide']) {
    const a = statsOf(c, 'a');
    assert.ok(Math.abs(frechetDistance(a, a)) < 1e-9 * trace(a), `${c}: FD(a, a)`);
  }
  // A constant shift keeps the (singular, n = 50 < d = 64) covariance: FD = ||shift||^2 exactly.
  const x = feat('small.a');
  const shift = torch.linspace(-1, 1, 64, { dtype: 'float64' });
  const shifted = frechetDistance(featureStats(x), featureStats(x.add(shift)));
  assert.ok(rel(shifted, shift.square().sum().item()) < 1e-9, `shift: ${shifted}`);
  // Diagonal covariances commute: tr sqrt(S1 S2) = sum sqrt(s1_i s2_i), zeros included.
  const s1 = [4, 0, 9, 1];
  const s2 = [1, 5, 0, 16];
  const diag = (v: number[]): number[][] => v.map((x_, i) => v.map((_, j) => (i === j ? x_ : 0)));
  const fd = frechetDistance(stats([1, 2, 3, 4], diag(s1)), stats([0, 2, 3, 6], diag(s2)));
  const expected = 1 + 4 + s1.reduce((s, v, i) => s + (Math.sqrt(v) - Math.sqrt(s2[i])) ** 2, 0);
  assert.ok(Math.abs(fd - expected) < 1e-12, `diagonal: ${fd} vs ${expected}`);
  // tr sqrt(S1 S2) = tr sqrt(S2 S1), whichever side is decomposed (frechetDistance picks the smaller set).
  const a = featureStats(fdSet('small', 'a'));
  const b = featureStats(fdSet('small', 'b'));
  assert.ok(rel(traceSqrtProduct(b.sigma, a.sigma, a.dim), traceSqrtProduct(a.sigma, b.sigma, a.dim)) < 1e-10);
  assert.equal(frechetDistance(a, b), frechetDistance(b, a));
});

test('frechetDistance: mismatched or malformed stats are refused, naming the dims', () => {
  const a = featureStats(feat('full.a'));
  const b = featureStats(feat('small.a'));
  assert.throws(() => frechetDistance(a, b), /feature dimensions differ \(first set: 32, second set: 64\)/);
  assert.throws(() => frechetDistance({ ...a, mu: a.mu.subarray(1) }, a), /mu of length 31, expected dim = 32/);
  assert.throws(() => frechetDistance(a, { ...a, sigma: new Float64Array(10) }), /second FeatureStats has sigma of length 10/);
});

test('kid equals the numpy unbiased MMD^2 on the same subsets', () => {
  const tol = (v: number, ref: number): boolean => Math.abs(v - ref) <= 1e-10 + 1e-9 * Math.abs(ref);
  for (const [name, other] of [['same', 'kid.b'], ['shifted', 'kid.c'], ['options', 'kid.c']]) {
    const r = refs.kid[name];
    const res = kid(feat('kid.a'), feat(other), { subsetIndices: r.subset_indices, ...r.options });
    assert.ok(tol(res.mean, r.mean), `${name}: mean ${res.mean} vs ${r.mean}`);
    assert.ok(tol(res.std, r.std), `${name}: std ${res.std} vs ${r.std}`);
    // Each subset on its own.
    for (let k = 0; k < 3; k++) {
      const one = kid(feat('kid.a'), feat(other), { subsetIndices: [r.subset_indices[k]], ...r.options });
      assert.ok(tol(one.mean, r.values[k]) && one.std === 0, `${name}[${k}]`);
    }
  }
  // One subset of every row: the random draw only reorders rows, which the estimate does not see.
  const whole = kid(feat('kid.a').narrow(0, 0, 100), feat('kid.b'), { subsets: 1, subsetSize: 100, seed: 5 });
  assert.ok(tol(whole.mean, refs.kid.whole.value), `whole: ${whole.mean} vs ${refs.kid.whole.value}`);
});

test('kid is unbiased: ~0 for two samples of one distribution, clearly > 0 for a shifted one', () => {
  torch.manualSeed(0);
  const a = torch.randn([6000, 8], { dtype: 'float64' });
  const b = torch.randn([6000, 8], { dtype: 'float64' });
  const same = kid(a, b, { subsets: 30, subsetSize: 200 });
  // Subsets barely overlap, so the 30 values are near independent: the mean's standard error is std / sqrt(30).
  // The biased (V-statistic) estimate would sit ~2 (E k(x,x) - E k(x,y)) / m = 2 (9.625 - 1.375) / 200 = 0.08 above 0.
  console.log(`# kid same distribution ${same.mean} +- ${same.std}`);
  assert.ok(Math.abs(same.mean) < 4 * same.std / Math.sqrt(30), `same: ${same.mean} +- ${same.std}`);
  assert.ok(Math.abs(same.mean) < 0.02 && same.std > 0);
  const shifted = kid(a, b.add(0.5), { subsets: 30, subsetSize: 200 });
  assert.ok(shifted.mean > 10 * shifted.std / Math.sqrt(30), `shifted: ${shifted.mean} +- ${shifted.std}`);
  // The same seed draws the same subsets; another seed other ones.
  assert.deepEqual(kid(a, b, { subsets: 30, subsetSize: 200 }), same);
  assert.notEqual(kid(a, b, { subsets: 30, subsetSize: 200, seed: 1 }).mean, same.mean);
});

test('kid: the subset size is clipped to the smaller set with a warning; bad input names the problem', () => {
  const warnings: string[] = [];
  const res = kid(feat('kid.a'), feat('kid.b'), { subsets: 2, warn: (m) => warnings.push(m) });
  assert.ok(Number.isFinite(res.mean));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /subsetSize 1000 .*120 and 100 rows.*using 100/);
  assert.throws(() => kid(feat('kid.a'), feat('full.a')), /feature dimensions differ \(first set: 16, second set: 32\)/);
  assert.throws(() => kid(feat('kid.a'), feat('kid.b'), { subsetIndices: [{ a: [0, 1], b: [0, 100] }] }),
    /subsetIndices\[0\]\.b holds 100, expected a row index in \[0, 100\)/);
  assert.throws(() => kid(feat('kid.a'), feat('kid.b'), { degree: 2.5 }), /degree must be a positive integer/);
});

test('precisionRecall equals brute-force numpy k-NN manifolds', () => {
  for (const r of refs.pr) {
    const res = precisionRecall(feat('pr.real'), feat('pr.fake'), { k: r.k });
    assert.equal(res.precision, r.precision, `k=${r.k} precision`);
    assert.equal(res.recall, r.recall, `k=${r.k} recall`);
  }
});

test('precisionRecall: 1 for identical sets, 0 for disjoint ones; dims are checked', () => {
  const real = feat('pr.real');
  assert.deepEqual(precisionRecall(real, real.clone()), { precision: 1, recall: 1 });
  assert.deepEqual(precisionRecall(real, real.add(100)), { precision: 0, recall: 0 });
  // Half of the fake set copied from the real one, half far away: precision 1/2, and at least the real
  // samples that were copied are recalled (each lies within its copy's ball).
  const half = torch.cat([real.narrow(0, 0, 100), real.narrow(0, 100, 100).add(100)]);
  const res = precisionRecall(real, half);
  assert.equal(res.precision, 0.5);
  assert.ok(res.recall >= 0.5, `recall ${res.recall}`);
  assert.throws(() => precisionRecall(real, feat('kid.a')), /feature dimensions differ \(first set: 8, second set: 16\)/);
  assert.throws(() => precisionRecall(real.narrow(0, 0, 3), real), /at least 4 feature vectors, got 3/);
});

test('the metrics free every tensor they create', () => {
  const before = torch.liveTensorCount();
  featureStats(feat('small.a'));
  frechetDistance(featureStats(feat('small.a')), featureStats(feat('small.b')));
  kid(feat('kid.a'), feat('kid.c'), { subsets: 3, subsetSize: 50 });
  precisionRecall(feat('pr.real'), feat('pr.fake'));
  assert.equal(torch.liveTensorCount(), before);
});
