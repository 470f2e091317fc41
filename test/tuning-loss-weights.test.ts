// P2 and Min-SNR loss weights against the paper's quoted values (§9 D), the fork's formulas
// evaluated in numpy (test/fixtures/tuning/refs.json, tools/make_tuning_refs.py), and the closed-form
// linear schedule rebuilt here in float64.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { createDiffusion } from '../src/diffusion';
import { gatherWeights, lossWeightTable, LossWeighting, snrTable } from '../src/tuning/loss-weights';

const T = 1000;
const REFS = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'tuning', 'refs.json'), 'utf8')).loss_weights;

/** The DDPM linear schedule (betas 1e-4..0.02 over 1000 steps) and its cumulative product, float64. */
function linearAlphasCumprod(): Float64Array {
  const ac = new Float64Array(T);
  let acc = 1;
  for (let i = 0; i < T; i++) {
    acc *= 1 - (0.0001 + (i * (0.02 - 0.0001)) / (T - 1));
    ac[i] = acc;
  }
  return ac;
}

function close(actual: number, expected: number, rel: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${what}: ${actual} vs ${expected}`);
}

test('the paper\'s values: P2 at t = 0 / 499 / 999 is 0.0100 / 0.9599 / 1.0000, SNR(99) = 8.71', () => {
  // Both the diffusion the trainer uses and the schedule rebuilt here.
  for (const ac of [createDiffusion().alphasCumprod, linearAlphasCumprod()]) {
    const p2 = lossWeightTable({ kind: 'p2', k: 1, gamma: 0.5 }, ac)!;
    assert.equal(p2.length, T);
    for (const [t, v] of [[0, 0.01], [499, 0.9599], [999, 1.0]]) assert.ok(Math.abs(p2[t] - v) <= 5e-5, `P2(${t}) = ${p2[t]}`);
    assert.ok(Math.abs(snrTable(ac)[99] - 8.71) <= 5e-3, `SNR(99) = ${snrTable(ac)[99]}`);
  }
});

test('SNR, P2 and both Min-SNR forms equal the fork\'s numpy formulas at known t', () => {
  const ac = linearAlphasCumprod();
  const ts: number[] = REFS.t;
  ts.forEach((t, j) => close(ac[t], REFS.alphas_cumprod[j], 1e-14, `alphas_cumprod[${t}]`));
  // The fork writes SNR = 1/(1-abar) - 1, which loses ~eps/abar relative accuracy (5e-12 at t = 999)
  // against abar/(1-abar); hence 1e-10 rather than 1e-14.
  const rel = 1e-10;
  const snr = snrTable(ac);
  ts.forEach((t, j) => close(snr[t], REFS.snr[j], rel, `SNR(${t})`));
  const tables: [LossWeighting, number[]][] = [
    [{ kind: 'p2', k: 1, gamma: 0.5 }, REFS['p2_k1_g0.5']],
    [{ kind: 'p2', k: 2, gamma: 1 }, REFS.p2_k2_g1],
    [{ kind: 'min-snr', gamma: 5 }, REFS.min_snr_g5],
    [{ kind: 'min-snr-code', gamma: 5 }, REFS.min_snr_code_g5],
    [{ kind: 'min-snr', gamma: 1 }, REFS.min_snr_g1],
    [{ kind: 'min-snr-code', gamma: 1 }, REFS.min_snr_code_g1],
  ];
  for (const [w, expected] of tables) {
    const table = lossWeightTable(w, ac)!;
    ts.forEach((t, j) => close(table[t], expected[j], rel, `${JSON.stringify(w)} at t=${t}`));
  }
});

test('canonical Min-SNR = min(SNR, gamma)/SNR and the code form = min(SNR, gamma), from the closed-form schedule', () => {
  const ac = linearAlphasCumprod();
  const gamma = 5;
  const canonical = lossWeightTable({ kind: 'min-snr', gamma }, ac)!;
  const code = lossWeightTable({ kind: 'min-snr-code', gamma }, ac)!;
  let crossings = 0;
  for (let t = 0; t < T; t++) {
    const snr = ac[t] / (1 - ac[t]);
    if (snr >= gamma) {
      close(canonical[t], gamma / snr, 1e-14, `canonical(${t})`);
      assert.equal(code[t], gamma, `code(${t})`);
    } else {
      assert.equal(canonical[t], 1, `canonical(${t})`);
      close(code[t], snr, 1e-14, `code(${t})`);
    }
    // The code's weight is the canonical one times SNR (D6).
    close(code[t], canonical[t] * snr, 1e-14, `code = canonical * SNR at ${t}`);
    if (t > 0 && (ac[t - 1] / (1 - ac[t - 1]) >= gamma) !== (snr >= gamma)) crossings += 1;
  }
  // SNR falls monotonically through gamma = 5 exactly once, so both regimes are exercised.
  assert.equal(crossings, 1);
  // The canonical weight emphasises high noise (<= 1 everywhere), the code's low noise (up to gamma).
  assert.ok(canonical[0] < 1e-3 && canonical[T - 1] === 1);
  assert.ok(code[0] === gamma && code[T - 1] < 1e-4);
});

test('none gives no table; P2 with gamma 0 is all ones', () => {
  const ac = linearAlphasCumprod();
  assert.equal(lossWeightTable({ kind: 'none' }, ac), null);
  assert.ok(lossWeightTable({ kind: 'p2', k: 1, gamma: 0 }, ac)!.every((w) => w === 1));
});

test('gatherWeights returns table[t] in float32 with t\'s shape and device', () => {
  const table = Float64Array.from({ length: T }, (_, t) => 1 / (t + 3));
  torch.scope(() => {
    const t = torch.tensor([[0, 1, 2], [999, 500, 7]], { dtype: 'int64' });
    const w = gatherWeights(table, t);
    assert.equal(w.dtype, 'float32');
    assert.deepEqual(w.shape, [2, 3]);
    assert.equal(w.device, t.device);
    assert.deepEqual(w.toArray(), [0, 1, 2, 999, 500, 7].map((k) => Math.fround(1 / (k + 3))));
    assert.deepEqual(gatherWeights(table, t.to({ dtype: 'int32' })).toArray(), w.toArray());
    assert.throws(() => gatherWeights(table, torch.tensor([1.0])), /integer tensor, got float32/);
  });
});

test('bad settings and schedules are refused with the field named', () => {
  const ac = linearAlphasCumprod();
  const field = 'objective.lossWeighting';
  const bad: [unknown, RegExp][] = [
    [{ kind: 'p2', k: -1, gamma: 0.5 }, /^objective\.lossWeighting: expected the P2 offset k as a finite number >= 0, got -1$/],
    [{ kind: 'p2', k: 1 }, /^objective\.lossWeighting: expected the P2 exponent gamma .*got undefined$/],
    [{ kind: 'min-snr', gamma: 0 }, /^objective\.lossWeighting: expected the Min-SNR cap gamma as a finite number > 0, got 0$/],
    [{ kind: 'min-snr-code', gamma: Number.NaN }, /^objective\.lossWeighting: .*got NaN$/],
    [{ kind: 'snr' }, /^objective\.lossWeighting: expected a loss weighting of kind 'none', 'p2', 'min-snr', 'min-snr-code', got kind "snr"$/],
  ];
  for (const [w, re] of bad) assert.throws(() => lossWeightTable(w as LossWeighting, ac, field), (e: Error) => re.test(e.message), JSON.stringify(w));
  assert.throws(() => snrTable([0.5, 1, 0.2]), /alphasCumprod\[1\] must lie strictly between 0 and 1, got 1/);
  assert.throws(() => snrTable([0.5, 0]), /alphasCumprod\[1\] .* got 0/);
  assert.throws(() => snrTable([]), /empty/);
});
