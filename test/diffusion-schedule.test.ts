// Diffusion schedules and timestep respacing against the official numpy values
// (shared/fixtures/dit-ref/diffusion.safetensors), plus the respacing rules themselves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as torch from '../src/torch';
import {
  computeSchedule, createDiffusion, getNamedBetaSchedule, linspace, pyRound, respaceBetas, SCHEDULE_ARRAY_NAMES,
  ScheduleArrays, snakeName, spaceTimesteps, SpacedDiffusion,
} from '../src/diffusion';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'dit-ref');
const FILE = path.join(FIXTURES, 'diffusion.safetensors');
const present = fs.existsSync(FILE);
const skip = present ? false : `fixture ${FILE} is absent`;
if (!present) console.log(`# skipping diffusion schedule fixture tests: ${FILE} not found`);

const TOL = 1e-12;

let ref: Map<string, Float64Array | number[]> | undefined;
function fixture(key: string): Float64Array | number[] {
  if (!ref) {
    ref = new Map();
    for (const [k, t] of torch.loadSafetensors(FILE)) {
      ref.set(k, t.dtype === 'int64' ? t.toArray() : Float64Array.from(t.data() as Float64Array));
      t.dispose();
    }
  }
  const v = ref.get(key);
  if (!v) throw new Error(`fixture tensor '${key}' is missing`);
  return v;
}

/** max|a - b| / max|ref| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den === 0 ? num : num / den;
}

function checkArrays(prefix: string, d: ScheduleArrays, names: readonly (keyof ScheduleArrays)[]): void {
  const report: string[] = [];
  for (const name of names) {
    const e = relErr(d[name], fixture(`${prefix}.${snakeName(name)}`));
    report.push(`${snakeName(name)} ${e.toExponential(1)}`);
    assert.ok(e <= TOL, `${prefix}.${snakeName(name)}: relative error ${e} > ${TOL}`);
  }
  console.log(`# ${prefix}: ${report.join(', ')}`);
}

test('pyRound rounds exact halves to even, like Python 3', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 166.5, 832.5, -0.5, -1.5, 2.4999999, 2.5000001].map(pyRound), [0, 2, 2, 166, 832, 0, -2, 2, 3]);
});

test('numpy linspace: start + i*step with the last entry exactly stop', () => {
  const l = linspace(1e-4, 0.02, 1000);
  assert.equal(l[0], 1e-4);
  assert.equal(l[999], 0.02);
  assert.equal(l[1], 1 * ((0.02 - 1e-4) / 999) + 1e-4);
  assert.deepEqual([...linspace(0, 1, 1)], [0]);
  assert.deepEqual([...linspace(2, 3, 0)], []);
});

test('spaceTimesteps: sections, ddim strides and errors', () => {
  assert.deepEqual(spaceTimesteps(1000, [1000]), Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(spaceTimesteps(1000, 'ddim50'), Array.from({ length: 50 }, (_, i) => i * 20));
  assert.deepEqual(spaceTimesteps(1000, 'ddim4'), [0, 250, 500, 750]);
  assert.throws(() => spaceTimesteps(1000, 'ddim300'), /exactly 300 steps/);
  // Three sections of 334, 333, 333 steps with 10, 15 and 20 steps each.
  const s = spaceTimesteps(1000, '10,15,20');
  assert.equal(s.length, 45);
  assert.deepEqual(s.slice(0, 3), [0, 37, 74]);
  assert.equal(s[9], 333);
  assert.equal(s[10], 334);
  assert.equal(s[24], 666);
  assert.equal(s[25], 667);
  assert.equal(s[44], 999);
  assert.deepEqual(spaceTimesteps(10, '1'), [0]);
  assert.throws(() => spaceTimesteps(10, '11'), /cannot divide section of 10 steps into 11/);
  assert.throws(() => spaceTimesteps(10, 'x'), /cannot parse/);
  // "25": stride 41.625; the exact halves 166.5 and 832.5 round to even.
  const r25 = spaceTimesteps(1000, '25');
  assert.ok(r25.includes(166) && r25.includes(832) && !r25.includes(167) && !r25.includes(833));
});

test('respaced betas keep alphas_cumprod at the kept steps', () => {
  const base = computeSchedule(getNamedBetaSchedule('linear', 1000));
  const use = spaceTimesteps(1000, '25');
  const r = respaceBetas(base.alphasCumprod, use);
  const s = computeSchedule(r.betas);
  assert.deepEqual(r.timestepMap, use);
  for (let k = 0; k < use.length; k++) {
    assert.ok(Math.abs(s.alphasCumprod[k] - base.alphasCumprod[use[k]]) <= 1e-15, `k = ${k}`);
  }
});

test('cosine schedule: betas capped at 0.999, alpha_bar follows cos^2', () => {
  const b = getNamedBetaSchedule('cosine', 1000);
  assert.deepEqual(b, getNamedBetaSchedule('squaredcos_cap_v2', 1000));
  assert.equal(b.length, 1000);
  assert.equal(b[999], 0.999);
  const ab = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const s = computeSchedule(b);
  assert.ok(Math.abs(s.alphasCumprod[499] - ab(0.5) / ab(0)) < 1e-12);
  assert.throws(() => getNamedBetaSchedule('nope' as 'linear', 10), /unknown beta schedule/);
});

test('linear schedule: betas_linspace is numpy linspace bit for bit', { skip }, () => {
  const raw = getNamedBetaSchedule('linear', 1000);
  const want = fixture('full.betas_linspace');
  let mismatches = 0;
  for (let i = 0; i < 1000; i++) if (raw[i] !== want[i]) mismatches++;
  console.log(`# betas_linspace: ${mismatches} of 1000 entries differ in the last bit`);
  assert.ok(relErr(raw, want) <= TOL);
});

test('create_diffusion(""): every table of the 1000-step SpacedDiffusion', { skip }, () => {
  const d = createDiffusion({ timestepRespacing: '' });
  assert.ok(d instanceof SpacedDiffusion);
  assert.equal(d.numTimesteps, 1000);
  assert.equal(d.modelVarType, 'learned_range');
  assert.equal(d.modelMeanType, 'epsilon');
  assert.equal(d.lossType, 'mse');
  assert.deepEqual([...d.timestepMap], fixture('full.timestep_map'));
  checkArrays('full', d, SCHEDULE_ARRAY_NAMES);
  // Quirk 3: the recomputed betas are not the linspace, by ~1e-16.
  const raw = getNamedBetaSchedule('linear', 1000);
  const diff = Math.max(...d.betas.map((b, i) => Math.abs(b - raw[i])));
  assert.ok(diff > 0 && diff < 1e-15, `betas vs linspace ${diff}`);
  // Quirk 4: posterior_log_variance_clipped[0] = log(posterior_variance[1]).
  assert.equal(d.posteriorVariance[0], 0);
  assert.equal(d.posteriorLogVarianceClipped[0], Math.log(d.posteriorVariance[1]));
  d.dispose();
});

test('create_diffusion("250") and ("25"): timestep maps exact, tables', { skip }, () => {
  const d250 = createDiffusion({ timestepRespacing: '250' });
  assert.deepEqual([...d250.timestepMap], fixture('r250.timestep_map'));
  checkArrays('r250', d250, ['betas', 'alphasCumprod']);
  const d25 = createDiffusion({ timestepRespacing: '25' });
  assert.deepEqual([...d25.timestepMap], fixture('r25.timestep_map'));
  assert.ok(d25.timestepMap.includes(166) && d25.timestepMap.includes(832));
  assert.equal(d25.originalNumSteps, 1000);
  checkArrays('r25', d25, SCHEDULE_ARRAY_NAMES);
});

test('createDiffusion options select variance, mean and loss types', () => {
  const fixed = createDiffusion({ timestepRespacing: 'ddim10', learnSigma: false });
  assert.equal(fixed.modelVarType, 'fixed_large');
  assert.equal(fixed.numTimesteps, 10);
  assert.deepEqual([...fixed.timestepMap], [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
  assert.equal(createDiffusion({ learnSigma: false, sigmaSmall: true, diffusionSteps: 50 }).modelVarType, 'fixed_small');
  assert.equal(createDiffusion({ predictXstart: true, diffusionSteps: 50 }).modelMeanType, 'start_x');
  assert.equal(createDiffusion({ useKl: true, diffusionSteps: 50 }).lossType, 'rescaled_kl');
  assert.equal(createDiffusion({ rescaleLearnedSigmas: true, diffusionSteps: 50 }).lossType, 'rescaled_mse');
  // The linear schedule scales with the number of steps: 100 steps span 1e-3..0.2.
  const b = getNamedBetaSchedule('linear', 100);
  assert.ok(Math.abs(b[0] - 1e-3) < 1e-18 && Math.abs(b[99] - 0.2) < 1e-16);
});

test('coefficients are gathered at t and cast to the working dtype', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '25' });
    const t = torch.tensor([0, 24, 7], { dtype: 'int64' });
    const x = torch.zeros([3, 2, 1, 1]);
    const xs = torch.ones([3, 2, 1, 1]);
    // q_sample(1, t, 0) = float32(sqrt_alphas_cumprod[t]).
    const q = d.qSample(xs, t, x);
    assert.equal(q.dtype, 'float32');
    const got = q.toArray();
    const want = [0, 24, 7].map((i) => Math.fround(d.sqrtAlphasCumprod[i]));
    assert.deepEqual(got, [want[0], want[0], want[1], want[1], want[2], want[2]]);
    // In float64 the table is not rounded.
    const q64 = d.qSample(xs.double(), t, x.double()).toArray();
    assert.deepEqual(q64, [want[0], want[0], want[1], want[1], want[2], want[2]].map((_, k) => d.sqrtAlphasCumprod[[0, 24, 7][k >> 1]]));
    d.dispose();
  });
});
