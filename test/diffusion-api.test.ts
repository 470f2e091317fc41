// Gaussian diffusion behaviour beyond the DiT fixtures: DDIM with eta, the reverse ODE step,
// x_0 / x_{t-1} parameterisations, classifier guidance hooks, the bits-per-dim loop and the
// timestep samplers. No fixtures needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import {
  cfgModel, conditionalHalf, createDiffusion, DiffusionModel, discretizedGaussianLogLikelihood, GaussianDiffusion,
  getNamedBetaSchedule, LossSecondMomentResampler, SpacedDiffusion, UniformSampler, uniformTimesteps,
} from '../src/diffusion';

function maxAbs(a: Tensor, b: Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item());
}

test('DDIM with eta = 1 uses the posterior standard deviation; eta = 0 is deterministic', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '10', diffusionSteps: 100 });
    const model: DiffusionModel<unknown> = (x) => torch.cat([x.mul(0.3), torch.zerosLike(x)], 1);
    torch.manualSeed(0);
    const x = torch.randn([2, 3, 4, 4]);
    const n = torch.randn([2, 3, 4, 4]);
    const t = torch.tensor([6, 6], { dtype: 'int64' });
    const o = { clipDenoised: false };
    const withNoise = d.ddimSample(model, x, t, { ...o, eta: 1, noise: n }).sample;
    const noNoise = d.ddimSample(model, x, t, { ...o, eta: 1, noise: torch.zerosLike(n) }).sample;
    const sigma = withNoise.sub(noNoise).div(n).mean().item();
    assert.ok(Math.abs(sigma - Math.sqrt(d.posteriorVariance[6])) < 1e-5, `${sigma}`);
    const a = d.ddimSample(model, x, t, { ...o, noise: n }).sample;
    const b = d.ddimSample(model, x, t, { ...o, noise: torch.zerosLike(n) }).sample;
    assert.equal(maxAbs(a, b), 0);
    // At the last step (t = 0) noise is masked for DDPM as well.
    const t0 = torch.tensor([0, 0], { dtype: 'int64' });
    assert.equal(maxAbs(d.pSample(model, x, t0, { ...o, noise: n }).sample, d.pSample(model, x, t0, { ...o, noise: torch.zerosLike(n) }).sample), 0);
    d.dispose();
  });
});

test('ddimReverseSample inverts ddimSample for an x-independent eps', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '', diffusionSteps: 50, learnSigma: false });
    torch.manualSeed(2);
    const e = torch.randn([2, 3, 4, 4]);
    const model: DiffusionModel<unknown> = () => e.clone();
    const x = torch.randn([2, 3, 4, 4]);
    const t = torch.tensor([10, 10], { dtype: 'int64' });
    const up = d.ddimReverseSample(model, x, t, { clipDenoised: false }).sample;
    const back = d.ddimSample(model, up, torch.tensor([11, 11], { dtype: 'int64' }), { clipDenoised: false }).sample;
    assert.ok(maxAbs(back, x) < 1e-5, `${maxAbs(back, x)}`);
    assert.throws(() => d.ddimReverseSample(model, x, t, { eta: 0.5 }), /eta = 0/);
  });
});

test('start_x and previous_x parameterisations recover x_0', () => {
  torch.scope(() => {
    const betas = getNamedBetaSchedule('linear', 100);
    torch.manualSeed(4);
    const x0 = torch.rand([2, 3, 4, 4]).mul(2).sub(1).mul(0.9);
    const t = torch.tensor([1, 70], { dtype: 'int64' });
    const base = { betas, modelVarType: 'fixed_small' as const, lossType: 'mse' as const };
    const sx = new GaussianDiffusion({ ...base, modelMeanType: 'start_x' });
    const noise = torch.randn([2, 3, 4, 4]);
    const xT = sx.qSample(x0, t, noise);
    const pm = sx.pMeanVariance(() => x0.clone(), xT, t);
    assert.ok(maxAbs(pm.predXstart, x0) < 1e-6);
    assert.ok(maxAbs(pm.mean, sx.qPosteriorMeanVariance(x0, xT, t).mean) === 0);
    const px = new GaussianDiffusion({ ...base, modelMeanType: 'previous_x' });
    const post = px.qPosteriorMeanVariance(x0, xT, t).mean;
    const pp = px.pMeanVariance(() => post.clone(), xT, t);
    assert.ok(maxAbs(pp.predXstart, x0) < 1e-3, `${maxAbs(pp.predXstart, x0)}`);
    assert.equal(maxAbs(pp.mean, post), 0);
    // The previous_x objective regresses the posterior mean.
    const l = px.trainingLosses(() => post.clone(), x0, t, { noise });
    assert.ok(l.mse!.max().item() < 1e-10);
    assert.equal(l.vb, undefined);
  });
});

test('classifier guidance hooks: a zero gradient changes nothing; spaced diffusion maps cond_fn timesteps', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '4', diffusionSteps: 40 });
    const model: DiffusionModel<unknown> = (x) => torch.cat([x.mul(0.2), x.mul(0).add(0.5)], 1);
    torch.manualSeed(5);
    const x = torch.randn([2, 1, 2, 2]);
    const n = torch.randn([2, 1, 2, 2]);
    const t = torch.tensor([3, 1], { dtype: 'int64' });
    const seen: number[][] = [];
    const zeroGrad = (xx: Tensor, tt: Tensor): Tensor => { seen.push(tt.toArray()); return torch.zerosLike(xx); };
    const a = d.pSample(model, x, t, { noise: n });
    const b = d.pSample(model, x, t, { noise: n, condFn: zeroGrad });
    assert.equal(maxAbs(a.sample, b.sample), 0);
    const c = d.ddimSample(model, x, t, { noise: n, condFn: zeroGrad });
    const c0 = d.ddimSample(model, x, t, { noise: n });
    assert.ok(maxAbs(c.sample, c0.sample) < 1e-6);
    assert.deepEqual(seen, [[39, 13], [39, 13]]);
    // A positive gradient moves the DDPM mean by variance * gradient.
    const up = d.pSample(model, x, t, { noise: n, condFn: (xx) => torch.onesLike(xx) });
    const pm = d.pMeanVariance(model, x, t);
    assert.ok(maxAbs(up.sample.sub(a.sample), pm.variance) < 1e-6);
  });
});

test('calcBpdLoop: per-step terms, prior and total', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '8', diffusionSteps: 64 });
    torch.manualSeed(6);
    const x0 = torch.rand([2, 1, 4, 4]).mul(2).sub(1);
    const model: DiffusionModel<unknown> = (x) => torch.cat([torch.zerosLike(x), torch.zerosLike(x)], 1);
    const r = d.calcBpdLoop(model, x0, { clipDenoised: true });
    assert.deepEqual(r.vb.shape, [2, 8]);
    assert.deepEqual(r.mse.shape, [2, 8]);
    assert.deepEqual(r.xstartMse.shape, [2, 8]);
    assert.ok(maxAbs(r.totalBpd, r.vb.sum(1).add(r.priorBpd)) < 1e-6);
    assert.ok(r.vb.min().item() >= 0 && r.priorBpd.min().item() >= 0);
  });
});

test('discretized likelihood: the bins of a grid sum to one', () => {
  torch.scope(() => {
    const grid = torch.linspace(-1, 1, 256, { dtype: 'float64' });
    const means = torch.full([256], 0.13, { dtype: 'float64' });
    const logScales = torch.full([256], Math.log(0.3), { dtype: 'float64' });
    const p = discretizedGaussianLogLikelihood(grid, means, logScales).exp().sum().item();
    assert.ok(Math.abs(p - 1) < 1e-6, `${p}`);
  });
});

test('cfgModel guides the chosen channels; conditionalHalf', () => {
  torch.scope(() => {
    const fwd = (x: Tensor, _t: Tensor, y: Tensor): Tensor => x.add(y.to({ dtype: 'float32' }).view([-1, 1, 1, 1]));
    const x = torch.zeros([4, 4, 1, 1]);
    const t = torch.zeros([4], { dtype: 'int64' });
    const y = torch.tensor([1, 2, 0, 0], { dtype: 'int64' });
    const out3 = cfgModel(fwd)(x, t, { y, cfgScale: 3 });
    // guided = 0 + 3 * (cond - 0) on channels 0..2; channel 3 passes through per row.
    assert.deepEqual(out3.select(1, 0).flatten().toArray(), [3, 6, 3, 6]);
    assert.deepEqual(out3.select(1, 3).flatten().toArray(), [1, 2, 0, 0]);
    const outAll = cfgModel(fwd, { guideChannels: 4 })(x, t, { y, cfgScale: 3 });
    assert.deepEqual(outAll.select(1, 3).flatten().toArray(), [3, 6, 3, 6]);
    assert.deepEqual(conditionalHalf(out3).shape, [2, 4, 1, 1]);
  });
});

test('timestep samplers: uniform draws, importance weights, loss-second-moment warm-up', () => {
  torch.scope(() => {
    torch.manualSeed(0);
    const t = uniformTimesteps(1000, 5000);
    assert.equal(t.dtype, 'int64');
    assert.ok(t.min().item() >= 0 && t.max().item() <= 999);
    const u = new UniformSampler(10).sample(100);
    assert.deepEqual(u.weights.toArray(), new Array(100).fill(1));
    const r = new LossSecondMomentResampler(3, 2, 0.0);
    assert.deepEqual([...r.weights()], [1, 1, 1]);
    r.updateWithAllLosses([0, 0, 1, 1, 2, 2, 2], [1, 1, 2, 2, 9, 4, 4]);
    const w = r.weights();
    assert.ok(Math.abs(w[0] - 1 / 7) < 1e-12 && Math.abs(w[1] - 2 / 7) < 1e-12 && Math.abs(w[2] - 4 / 7) < 1e-12);
    const s = r.sample(4000);
    const frac0 = s.timesteps.eq(0).to({ dtype: 'float32' }).mean().item();
    assert.ok(Math.abs(frac0 - 1 / 7) < 0.03, `${frac0}`);
    // weight = 1 / (T p[t]) makes the weighted mean unbiased.
    assert.ok(Math.abs(s.weights.mean().item() - 1) < 0.1);
  });
});

test('SpacedDiffusion maps timesteps for any int dtype and validates its steps', () => {
  torch.scope(() => {
    const d = new SpacedDiffusion([0, 5, 9], {
      betas: getNamedBetaSchedule('cosine', 10), modelMeanType: 'epsilon', modelVarType: 'fixed_large', lossType: 'mse',
    });
    assert.deepEqual(d.mapTimesteps(torch.tensor([2, 0, 1], { dtype: 'int64' })).toArray(), [9, 0, 5]);
    assert.equal(d.mapTimesteps(torch.tensor([2], { dtype: 'int32' })).dtype, 'int32');
    assert.throws(() => new SpacedDiffusion([10], {
      betas: getNamedBetaSchedule('cosine', 10), modelMeanType: 'epsilon', modelVarType: 'fixed_large', lossType: 'mse',
    }), /outside/);
    const wrapped = d.wrapModel((x) => x);
    assert.equal(d.wrapModel(wrapped), wrapped);
  });
});
