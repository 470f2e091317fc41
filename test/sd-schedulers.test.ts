// diffusers' DDPM / DDIM / PNDM schedulers with Stable Diffusion 1.5's configuration against the
// golden arrays and steps of shared/fixtures/sd-controlnet-ref/schedulers.safetensors (README
// "Schedulers": float32 tensors within 1e-6 rel max, timesteps exact), plus hand-computed
// spacings, config handling and memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get, loadFixture, relErr } from './helpers/dit-ref';
import { SD_FIXTURES, readSdJson, skipUnlessSdFixtures } from './helpers/sd-formula-weights';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import {
  DdimScheduler, DdpmScheduler, PndmScheduler, SD15_SCHEDULER_JSON, schedulerConfigFromJson, schedulerFromConfig, spacedTimesteps,
} from '../src/diffusion/schedulers';

const skip = skipUnlessSdFixtures(['schedulers.safetensors', 'report.json'], 'SD scheduler fixture tests');
const TOL = 1e-6;
let cached: Map<string, Tensor> | undefined;
const fx = (key: string): Tensor => get((cached ??= loadFixture(SD_FIXTURES, 'schedulers.safetensors')), key);
const ints = (t: Tensor): number[] => t.toArray();

const maxErrors: Record<string, number> = {};
function close(got: Tensor, key: string, tol = TOL): void {
  const e = relErr(got, fx(key));
  maxErrors[key] = e;
  assert.ok(e <= tol, `${key}: rel max err ${e} > ${tol}`);
}

test('SD1.5 betas, alphas and alphas_cumprod equal diffusers\' float32 tables', { skip }, () => {
  for (const s of [DdpmScheduler.fromConfig(SD15_SCHEDULER_JSON), DdimScheduler.fromConfig(SD15_SCHEDULER_JSON), PndmScheduler.fromConfig(SD15_SCHEDULER_JSON)]) {
    torch.scope(() => {
      for (const [name, arr] of [['betas', s.betas], ['alphas', s.alphas], ['alphas_cumprod', s.alphasCumprod]] as const) {
        assert.deepEqual(Array.from(arr), fx(name).toArray(), `${s.constructor.name}.${name} differs from the fixture`);
      }
    });
    assert.equal(s.initNoiseSigma, 1);
  }
  const ddim = DdimScheduler.fromConfig(SD15_SCHEDULER_JSON);
  assert.equal(ddim.finalAlphaCumprod, 0.9991499781608582);
  assert.equal(PndmScheduler.fromConfig(SD15_SCHEDULER_JSON).finalAlphaCumprod, 0.9991499781608582);
});

test('set_timesteps(50) gives the fixture\'s timesteps ("leading" + steps_offset 1; PLMS repeats the 2nd)', { skip }, () => {
  const ddpm = DdpmScheduler.fromConfig(SD15_SCHEDULER_JSON);
  const ddim = DdimScheduler.fromConfig(SD15_SCHEDULER_JSON);
  const pndm = PndmScheduler.fromConfig(SD15_SCHEDULER_JSON);
  for (const s of [ddpm, ddim, pndm]) s.setTimesteps(50);
  assert.deepEqual(ddpm.timesteps, ints(fx('ddpm.timesteps')));
  assert.deepEqual(ddim.timesteps, ints(fx('ddim.timesteps')));
  assert.deepEqual(pndm.timesteps, ints(fx('pndm.timesteps')));
  assert.deepEqual(ddim.timesteps.slice(0, 3), [981, 961, 941]);
  assert.deepEqual(pndm.timesteps.slice(0, 4), [981, 961, 961, 941]);
  assert.equal(pndm.prkTimesteps.length, 0);
});

test('the effective configs equal the report\'s (from_config of SD1.5\'s scheduler_config.json)', { skip }, () => {
  const report = readSdJson<{ schedulers: Record<string, { config: Record<string, unknown> }> }>('report.json').schedulers;
  const snake = (c: object): Record<string, unknown> =>
    Object.fromEntries(Object.entries(c).map(([k, v]) => [k.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`), v]));
  const cases: [string, 'ddpm' | 'ddim' | 'pndm'][] = [['DDPMScheduler', 'ddpm'], ['DDIMScheduler', 'ddim'], ['PNDMScheduler', 'pndm']];
  for (const [cls, kind] of cases) {
    const ours = snake(schedulerConfigFromJson(kind, SD15_SCHEDULER_JSON));
    for (const [key, value] of Object.entries(report[cls].config)) {
      if (key === 'thresholding' || key === 'rescale_betas_zero_snr' || key === 'dynamic_thresholding_ratio' || key === 'sample_max_value') continue;
      assert.deepEqual(ours[key], value, `${cls}.${key}`);
    }
  }
});

test('DDIM steps (eta 0 at t=981 and t=1, eta 1 with given noise) match diffusers', { skip }, () => {
  const s = DdimScheduler.fromConfig(SD15_SCHEDULER_JSON);
  s.setTimesteps(50);
  torch.scope(() => {
    const sample = fx('sched.sample');
    const eps = fx('sched.model_output.0');
    let o = s.step(eps, 981, sample, { eta: 0 });
    close(o.prevSample, 'ddim.step_first.prev_sample');
    close(o.predOriginalSample, 'ddim.step_first.pred_original_sample');
    // t = 1: previous timestep -19 < 0 uses final_alpha_cumprod.
    o = s.step(eps, 1, sample, { eta: 0 });
    close(o.prevSample, 'ddim.step_last.prev_sample');
    close(o.predOriginalSample, 'ddim.step_last.pred_original_sample');
    o = s.step(eps, 781, sample, { eta: 1, varianceNoise: fx('ddim.step_eta1.variance_noise') });
    close(o.prevSample, 'ddim.step_eta1.prev_sample');
    close(o.predOriginalSample, 'ddim.step_eta1.pred_original_sample');
  });
});

test('PNDM (PLMS, skip_prk_steps): the first 5 steps on one instance match diffusers', { skip }, () => {
  const s = PndmScheduler.fromConfig(SD15_SCHEDULER_JSON);
  s.setTimesteps(50);
  const history = [1, 1, 2, 3, 4];
  torch.scope(() => {
    let sample = fx('sched.sample');
    for (let j = 0; j < 5; j++) {
      assert.equal(s.timesteps[j], [981, 961, 961, 941, 921][j]);
      const { prevSample } = s.step(fx(`sched.model_output.${j}`), s.timesteps[j], sample);
      close(prevSample, `pndm.step_${j}.prev_sample`);
      assert.equal(s.counter, j + 1);
      assert.equal(s.historyLength, history[j], `len(ets) after step ${j}`);
      sample = prevSample;
    }
  });
  s.dispose();
});

test('DDPM add_noise and step (fixed_small, generator seed 30) match diffusers', { skip }, () => {
  const s = DdpmScheduler.fromConfig(SD15_SCHEDULER_JSON);
  torch.scope(() => {
    const noisy = s.addNoise(fx('sched.sample'), fx('ddpm.add_noise.noise'), fx('ddpm.add_noise.timesteps'));
    close(noisy, 'ddpm.add_noise.noisy');
    const fromList = s.addNoise(fx('sched.sample'), fx('ddpm.add_noise.noise'), [981, 421]);
    assert.ok(fromList.equal(noisy));
    s.setTimesteps(50);
    assert.equal(s.previousTimestep(981), 961);
    assert.equal(s.previousTimestep(1), -1);
    const o = s.step(fx('sched.model_output.0'), 981, fx('sched.sample'), { generator: new torch.Generator('cpu', 30) });
    close(o.prevSample, 'ddpm.step.prev_sample');
    close(o.predOriginalSample, 'ddpm.step.pred_original_sample');
    // The same seed draws the same noise as torch: the step equals mean + sqrt(var) * that noise.
    const given = s.step(fx('sched.model_output.0'), 981, fx('sched.sample'), { varianceNoise: fx('ddpm.step.variance_noise') });
    assert.ok(given.prevSample.equal(o.prevSample), 'generator seed 30 must draw the fixture\'s variance_noise');
  });
});

test('DDPM and DDIM (eta 1) steps on CUDA with a CPU generator draw the CPU noise, as diffusers does', { skip: skip || (!torch.cuda.isAvailable() && 'needs CUDA') }, () => {
  const ddpm = DdpmScheduler.fromConfig(SD15_SCHEDULER_JSON);
  const ddim = DdimScheduler.fromConfig(SD15_SCHEDULER_JSON);
  ddpm.setTimesteps(50);
  ddim.setTimesteps(50);
  torch.scope(() => {
    const out = fx('sched.model_output.0').to({ device: 'cuda' });
    const sample = fx('sched.sample').to({ device: 'cuda' });
    const o = ddpm.step(out, 981, sample, { generator: new torch.Generator('cpu', 30) });
    close(o.prevSample.to({ device: 'cpu' }), 'ddpm.step.prev_sample', 1e-5);
    const a = ddim.step(out, 981, sample, { eta: 1, generator: new torch.Generator('cpu', 7) });
    const b = ddim.step(out, 981, sample, { eta: 1, varianceNoise: torch.randn(out.shape, { generator: new torch.Generator('cpu', 7) }).to({ device: 'cuda' }) });
    assert.ok(a.prevSample.equal(b.prevSample));
  });
});

test('timestep spacings: hand-computed leading, trailing and linspace (numpy round half to even)', () => {
  assert.deepEqual(spacedTimesteps(1000, 4, 'leading', 1), [1, 251, 501, 751]);
  assert.deepEqual(spacedTimesteps(1000, 3, 'trailing', 1), [332, 666, 999]);
  assert.deepEqual(spacedTimesteps(1000, 7, 'linspace', 1), [0, 166, 333, 500, 666, 832, 999]);
  assert.equal(spacedTimesteps(1000, 30, 'trailing', 0).length, 30);
  assert.throws(() => spacedTimesteps(1000, 1001, 'leading', 0), /cannot be larger than num_train_timesteps 1000/);
  const ddim = new DdimScheduler({ timestepSpacing: 'trailing' });
  ddim.setTimesteps(3);
  assert.deepEqual(ddim.timesteps, [999, 666, 332]);
  // PRK warm-up (skip_prk_steps false): diffusers' interleaving of the last 4 timesteps and their midpoints.
  const pndm = new PndmScheduler({ stepsOffset: 1 });
  pndm.setTimesteps(10);
  assert.deepEqual(pndm.prkTimesteps, [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601]);
  assert.deepEqual(pndm.plmsTimesteps, [601, 501, 401, 301, 201, 101, 1]);
});

test('PRK warm-up: a constant eps over the 4 sub-steps is one PNDM transfer with that eps', () => {
  const s = new PndmScheduler({ betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, stepsOffset: 1 });
  const plms = new PndmScheduler({ betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, stepsOffset: 1, skipPrkSteps: true });
  s.setTimesteps(10);
  plms.setTimesteps(10);
  torch.scope(() => {
    const g = new torch.Generator('cpu', 3);
    const x = torch.randn([1, 4, 8, 8], { generator: g });
    const eps = torch.randn([1, 4, 8, 8], { generator: g });
    let out = x;
    for (let j = 0; j < 4; j++) out = s.step(eps, s.timesteps[j], j === 0 ? x : out).prevSample;
    // PLMS's first step (counter 0) is the same order-1 transfer 901 -> 801.
    const ref = plms.step(eps, 901, x).prevSample;
    assert.ok(relErr(out, ref) < 1e-6, `RK4 with constant eps: ${relErr(out, ref)}`);
  });
  s.dispose();
  plms.dispose();
});

test('a PNDM loop keeps a bounded history: live tensors stay constant once 4 eps are stored', () => {
  const s = PndmScheduler.fromConfig(SD15_SCHEDULER_JSON);
  s.setTimesteps(20);
  const g = new torch.Generator('cpu', 5);
  let sample = torch.randn([1, 4, 8, 8], { generator: g }).keep();
  const counts: number[] = [];
  for (const t of s.timesteps.slice(0, 10)) {
    const next = torch.scope(() => s.step(torch.randn([1, 4, 8, 8], { generator: g }), t, sample).prevSample.keep());
    sample.dispose();
    sample = next;
    counts.push(torch.liveTensorCount());
  }
  assert.ok(counts.slice(5).every((c) => c === counts[5]), `live tensors per step: ${counts.join(', ')}`);
  sample.dispose();
  const before = torch.liveTensorCount();
  s.dispose();
  assert.equal(torch.liveTensorCount(), before - 4, 'dispose frees the 4 stored eps');
});

test('config errors name the field; from_config ignores fields a class does not have', () => {
  assert.throws(() => schedulerConfigFromJson('ddim', { beta_schedule: 'cosine' }, 'sched.json'), /sched\.json: 'beta_schedule' must be one of/);
  assert.throws(() => schedulerConfigFromJson('ddpm', { thresholding: true }, 'x.json'), /x\.json: 'thresholding' = true is not supported/);
  assert.throws(() => schedulerConfigFromJson('ddim', { steps_offset: -1 }), /'steps_offset' must be a non-negative integer/);
  const ddpm = schedulerConfigFromJson('ddpm', SD15_SCHEDULER_JSON);
  assert.equal(ddpm.skipPrkSteps, false, 'DDPM has no skip_prk_steps: its default stays');
  assert.equal(ddpm.clipSample, false);
  assert.ok(schedulerFromConfig('ddim', SD15_SCHEDULER_JSON) instanceof DdimScheduler);
  const s = new DdimScheduler();
  assert.throws(() => torch.scope(() => s.step(torch.zeros([1]), 10, torch.zeros([1]))), /call setTimesteps\(n\) before step\(\)/);
  s.setTimesteps(10);
  assert.throws(() => torch.scope(() => s.step(torch.zeros([1]), 1000, torch.zeros([1]))), /timestep 1000 is outside 0\.\.999/);
});

test('report: max scheduler errors vs the fixture', { skip }, () => {
  console.log(`# scheduler rel max errors: ${JSON.stringify(maxErrors)}`);
});
