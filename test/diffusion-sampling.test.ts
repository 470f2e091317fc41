// DDPM (with classifier-free guidance) and DDIM sampling over the 25-step respaced diffusion,
// against the official PyTorch code (shared/fixtures/dit-ref/sampling.safetensors): from the
// seed (libtorch's generator gives PyTorch's stream) and with the recorded noise injected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { DiT } from '../src/models/dit';
import { get, load, refModel, relErr, skipUnless } from './helpers/dit-ref';
import { cfgBatch, CfgKwargs, cfgModel, createDiffusion, DiffusionModel, LoopStep } from '../src/diffusion';

const skip = skipUnless(['model.safetensors', 'sampling.safetensors', 'config.json'], 'diffusion sampling fixture tests');

const TOL = 1e-4;

let cached: { model: DiT; S: Map<string, Tensor> } | undefined;
function setup(): { model: DiT; S: Map<string, Tensor> } {
  if (!cached) cached = { model: refModel(), S: load('sampling.safetensors') };
  return cached;
}

function check(name: string, got: Tensor, ref: Tensor): void {
  const e = relErr(got, ref);
  console.log(`# ${name}: max|a-b|/max|ref| = ${e.toExponential(1)}`);
  assert.ok(e <= TOL, `${name}: ${e} > ${TOL}`);
}

/** The model seen through the diffusion: records timesteps, forwards with CFG (DiT's forward_with_cfg). */
function guided(model: DiT, seen: number[][]): DiffusionModel<CfgKwargs> {
  return (x, t, k) => {
    seen.push(t.toArray());
    return model.forwardWithCfg(x, t, k.y, k.cfgScale);
  };
}

function trajectoryCollector(into: Tensor[]): (s: LoopStep) => void {
  return (s) => into.push(s.sample.clone());
}

test('DDPM + CFG from the seed: manual_seed(0), randn z, randn_like each step (25 steps)', { skip }, () => {
  const { model, S } = setup();
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '25' });
    const before = torch.liveTensorCount();
    torch.manualSeed(0);
    const z = torch.randn([2, 4, 8, 8]);
    check('z from the seed', z, get(S, 'z'));
    const batch = cfgBatch(z, get(S, 'y'), model.config.numClasses);
    assert.deepEqual(batch.y.toArray(), get(S, 'ddpm_cfg.y_in').toArray());
    const seen: number[][] = [];
    const traj: Tensor[] = [];
    const indices: number[] = [];
    let progressCalls = 0;
    const samples = d.pSampleLoop(guided(model, seen), batch.x.shape, {
      noise: batch.x, clipDenoised: false, modelKwargs: { y: batch.y, cfgScale: get(S, 'ddpm_cfg.cfg_scale').item() },
      onStep: (s) => { indices.push(s.index); traj.push(s.sample.clone()); },
      progress: (done, total) => { progressCalls++; assert.equal(total, 25); assert.equal(done, progressCalls); },
    });
    assert.equal(progressCalls, 25);
    assert.deepEqual(indices, get(S, 'ddpm_cfg.step_index').toArray());
    assert.deepEqual(seen.map((t) => t[0]), get(S, 'ddpm_cfg.model_t').toArray(), 'the model sees timestep_map[i]');
    assert.ok(seen.every((t) => t.length === 4 && t.every((v) => v === t[0])));
    check('ddpm_cfg.trajectory (seeded)', torch.stack(traj, 0), get(S, 'ddpm_cfg.trajectory'));
    check('ddpm_cfg.samples (seeded)', samples, get(S, 'ddpm_cfg.samples'));
    // The generator moved by exactly 25 draws of [4, 4, 8, 8] after z (one per step, the last included).
    const next = torch.randn([16]).toArray();
    torch.manualSeed(0);
    torch.randn([2, 4, 8, 8]);
    for (let i = 0; i < 25; i++) torch.randn([4, 4, 8, 8]);
    assert.deepEqual(torch.randn([16]).toArray(), next);
    // No handle leaks from the loop: only the returned samples and our clones survive.
    const live = torch.liveTensorCount() - before;
    assert.ok(live < 100, `live tensors grew by ${live}`);
    d.dispose();
  });
});

test('DDPM + CFG with the recorded noise injected (noiseFn) reproduces the trajectory', { skip }, () => {
  const { model, S } = setup();
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '25' });
    const noise = get(S, 'ddpm_cfg.noise');
    const traj: Tensor[] = [];
    const steps: number[] = [];
    const samples = d.pSampleLoop(guided(model, []), [4, 4, 8, 8], {
      noise: get(S, 'ddpm_cfg.z_in'), clipDenoised: false,
      modelKwargs: { y: get(S, 'ddpm_cfg.y_in'), cfgScale: 4.0 },
      noiseFn: (step) => { steps.push(step); return noise.select(0, step); },
      onStep: trajectoryCollector(traj),
    });
    assert.deepEqual(steps, Array.from({ length: 25 }, (_, i) => i));
    check('ddpm_cfg.trajectory (injected)', torch.stack(traj, 0), get(S, 'ddpm_cfg.trajectory'));
    check('ddpm_cfg.samples (injected)', samples, get(S, 'ddpm_cfg.samples'));
    // The generic cfgModel over model.forward is forward_with_cfg.
    const generic = cfgModel((x, t, y) => model.forward(x, t, y));
    const step0 = torch.noGrad(() => d.pSample(generic, get(S, 'ddpm_cfg.z_in'), torch.full([4], 24, { dtype: 'int64' }), {
      clipDenoised: false, modelKwargs: { y: get(S, 'ddpm_cfg.y_in'), cfgScale: 4.0 }, noise: noise.select(0, 0),
    }));
    check('cfgModel step 0', step0.sample, get(S, 'ddpm_cfg.trajectory').select(0, 0));
    d.dispose();
  });
});

test('a sampling loop outside any scope frees everything but its result', { skip }, () => {
  const { model, S } = setup();
  const d = createDiffusion({ timestepRespacing: '25' });
  const run = (): Tensor => d.pSampleLoop(guided(model, []), [4, 4, 8, 8], {
    noise: get(S, 'ddpm_cfg.z_in'), clipDenoised: false, modelKwargs: { y: get(S, 'ddpm_cfg.y_in'), cfgScale: 4.0 },
  });
  run().dispose(); // uploads the coefficient tables (kept)
  const before = torch.liveTensorCount();
  const out = run();
  assert.equal(torch.liveTensorCount() - before, 1);
  out.dispose();
  d.dispose();
});

test('DDIM (eta 0, no CFG) over 25 steps: trajectory and samples', { skip }, () => {
  const { model, S } = setup();
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '25' });
    const traj: Tensor[] = [];
    const seen: number[][] = [];
    const fn: DiffusionModel<{ y: Tensor }> = (x, t, k) => { seen.push(t.toArray()); return model.forward(x, t, k.y); };
    const samples = d.ddimSampleLoop(fn, [2, 4, 8, 8], {
      noise: get(S, 'z'), clipDenoised: false, modelKwargs: { y: get(S, 'ddim.y_in') }, eta: 0.0, onStep: trajectoryCollector(traj),
    });
    assert.deepEqual(seen.map((t) => t[0]), get(S, 'ddpm_cfg.model_t').toArray());
    check('ddim.trajectory', torch.stack(traj, 0), get(S, 'ddim.trajectory'));
    check('ddim.samples', samples, get(S, 'ddim.samples'));
    // eta = 0 still draws noise every step (the RNG advances by 25 draws of [2, 4, 8, 8]).
    torch.manualSeed(123);
    d.ddimSampleLoop(fn, [2, 4, 8, 8], { noise: get(S, 'z'), clipDenoised: false, modelKwargs: { y: get(S, 'ddim.y_in') } });
    const after = torch.randn([16]).toArray();
    torch.manualSeed(123);
    for (let i = 0; i < 25; i++) torch.randn([2, 4, 8, 8]);
    assert.deepEqual(torch.randn([16]).toArray(), after);
    d.dispose();
  });
});

test('progressive loop hands out each step and frees it after the next; clipping; fixed variances', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '5', diffusionSteps: 50, learnSigma: false });
    const eps: DiffusionModel<unknown> = (x) => x.mul(0.1);
    torch.manualSeed(3);
    const seenSamples: Tensor[] = [];
    let n = 0;
    for (const s of d.pSampleLoopProgressive(eps, [2, 3, 4, 4])) {
      if (seenSamples.length) assert.ok(seenSamples[seenSamples.length - 1].isDisposed, 'previous step freed');
      seenSamples.push(s.sample);
      assert.ok(s.predXstart.abs().max().item() <= 1, 'clipDenoised defaults to true');
      n++;
    }
    assert.equal(n, 5);
    assert.ok(!seenSamples[4].isDisposed, 'the last step belongs to the caller');
    // Fixed-small vs fixed-large: same mean, different variance.
    const small = createDiffusion({ timestepRespacing: '5', diffusionSteps: 50, learnSigma: false, sigmaSmall: true });
    const x = torch.randn([2, 3, 4, 4]);
    const t = torch.tensor([0, 3], { dtype: 'int64' });
    const a = d.pMeanVariance(eps, x, t);
    const b = small.pMeanVariance(eps, x, t);
    assert.equal(relErr(a.mean, b.mean), 0);
    assert.ok(Math.abs(b.variance.select(0, 1).max().item() - Math.fround(small.posteriorVariance[3])) === 0);
    assert.ok(Math.abs(a.variance.select(0, 1).max().item() - Math.fround(d.betas[3])) === 0);
    assert.ok(Math.abs(a.variance.select(0, 0).max().item() - Math.fround(d.posteriorVariance[1])) === 0);
  });
});
