// Diffusion training losses (per-sample mse / vb / loss, including Diff-Tuning's replay rows)
// against the official PyTorch code (shared/fixtures/dit-ref/losses.safetensors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { DiT } from '../src/models/dit';
import { get, load, refModel, relErr, skipUnless } from './helpers/dit-ref';
import { createDiffusion, DiffusionModel, normalKl, nullLabelsFrom } from '../src/diffusion';

const skip = skipUnless(['model.safetensors', 'losses.safetensors', 'config.json'], 'diffusion loss fixture tests');

let cached: { model: DiT; L: Map<string, Tensor> } | undefined;
function setup(): { model: DiT; L: Map<string, Tensor> } {
  if (!cached) cached = { model: refModel(), L: load('losses.safetensors') };
  return cached;
}

/** Per-sample |a - b| / |ref| against the tolerance (looser where t == 0), with a report line. */
function checkPerSample(name: string, got: Tensor, ref: Tensor, t: number[], tol: (t: number) => number): void {
  const a = got.toArray();
  const b = ref.toArray();
  assert.equal(a.length, b.length, `${name}: length`);
  const errs = a.map((v, i) => Math.abs(v - b[i]) / Math.abs(b[i]));
  console.log(`# ${name}: per-sample rel err ${errs.map((e) => e.toExponential(1)).join(' ')}`);
  errs.forEach((e, i) => assert.ok(e <= tol(t[i]), `${name}[${i}] (t=${t[i]}): ${a[i]} vs ${b[i]}, rel err ${e} > ${tol(t[i])}`));
}

const tolFor = (kind: 'loss' | 'mse' | 'vb') => (t: number): number => (kind !== 'mse' && t === 0 ? 1e-4 : 1e-5);

test('q_sample and the model input/output match the reference intermediates', { skip }, () => {
  const { model, L } = setup();
  torch.noGrad(() => torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '' });
    const xT = d.qSample(get(L, 'x_start'), get(L, 't'), get(L, 'noise'));
    const e = relErr(xT, get(L, 'x_t'));
    console.log(`# x_t: rel err ${e.toExponential(1)}`);
    assert.ok(e <= 1e-6);
    const out = model.forward(xT, get(L, 't'), get(L, 'y'));
    const eo = relErr(out, get(L, 'model_output'));
    console.log(`# model_output: rel err ${eo.toExponential(1)}`);
    assert.ok(eo <= 1e-5);
    d.dispose();
  }));
});

test('training_losses: per-sample loss, mse and vb (incl. t = 0 decoder NLL and t = 999)', { skip }, () => {
  const { model, L } = setup();
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '' });
    const t = get(L, 't');
    const seen: number[][] = [];
    const fn: DiffusionModel<{ y: Tensor }> = (x, tt, k) => {
      seen.push(tt.toArray());
      return model.forward(x, tt, k.y);
    };
    const terms = d.trainingLosses(fn, get(L, 'x_start'), t, { modelKwargs: { y: get(L, 'y') }, noise: get(L, 'noise') });
    assert.deepEqual(seen, [t.toArray()], 'the model is called once, with the original timesteps');
    assert.ok(terms.mse && terms.vb);
    const ts = t.toArray();
    for (const k of ['loss', 'mse', 'vb'] as const) {
      assert.deepEqual(terms[k]!.shape, [6]);
      assert.equal(terms[k]!.dtype, 'float32');
      checkPerSample(k, terms[k]!, get(L, k), ts, tolFor(k));
    }
    d.dispose();
  });
});

test('training_losses with replay rows (y_embed_split [4, 2]: replay labels become the null label)', { skip }, () => {
  const { model, L } = setup();
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '' });
    const t = get(L, 't');
    const [nTarget] = get(L, 'replay.y_embed_split').toArray();
    const yEff = nullLabelsFrom(get(L, 'y'), nTarget, model.config.numClasses);
    assert.deepEqual(yEff.toArray(), get(L, 'replay.y_effective').toArray());
    const fn: DiffusionModel<{ y: Tensor }> = (x, tt, k) => model.forward(x, tt, k.y);
    const terms = d.trainingLosses(fn, get(L, 'x_start'), t, { modelKwargs: { y: yEff }, noise: get(L, 'noise') });
    const ts = t.toArray();
    for (const k of ['loss', 'mse', 'vb'] as const) checkPerSample(`replay.${k}`, terms[k]!, get(L, `replay.${k}`), ts, tolFor(k));
    // The same through DiT's forced label drop.
    const drop = torch.tensor([0, 0, 0, 0, 1, 1], { dtype: 'int64' });
    const viaDrop = d.trainingLosses((x, tt) => model.forward(x, tt, get(L, 'y'), { forceDropIds: drop }), get(L, 'x_start'), t,
      { noise: get(L, 'noise') });
    assert.ok(relErr(viaDrop.loss, terms.loss) === 0);
    d.dispose();
  });
});

test('the vb term trains only the variance channels; the mse only the mean channels', () => {
  torch.scope(() => {
    const d = createDiffusion({ timestepRespacing: '', diffusionSteps: 100 });
    torch.manualSeed(1);
    const xStart = torch.randn([3, 2, 4, 4]);
    const out = torch.randn([3, 4, 4, 4]).mul(0.5).requiresGrad_();
    const t = torch.tensor([0, 5, 99], { dtype: 'int64' });
    const terms = d.trainingLosses(() => out.mul(1), xStart, t);
    const [gVb] = torch.grad([terms.vb!.sum()], [out], undefined, { retainGraph: true });
    const [gMse] = torch.grad([terms.mse!.sum()], [out]);
    assert.equal(gVb!.slice(1, 0, 2).abs().max().item(), 0);
    assert.ok(gVb!.slice(1, 2).abs().max().item() > 0);
    assert.equal(gMse!.slice(1, 2).abs().max().item(), 0);
    assert.ok(gMse!.slice(1, 0, 2).abs().max().item() > 0);
    d.dispose();
  });
});

test('respaced training maps indices to original timesteps; KL objective equals T * vb', { skip }, () => {
  const { model, L } = setup();
  torch.noGrad(() => torch.scope(() => {
    const d25 = createDiffusion({ timestepRespacing: '25' });
    const seen: number[] = [];
    d25.trainingLosses((x, t) => {
      seen.push(...t.toArray());
      return torch.zeros([x.shape[0], 8, 8, 8]);
    }, get(L, 'x_start').slice(0, 0, 3), torch.tensor([0, 4, 24], { dtype: 'int64' }));
    assert.deepEqual(seen, [0, 166, 999]);
    d25.dispose();
    // The rescaled-KL objective is the same bound with the mean not detached, times T.
    const dKl = createDiffusion({ timestepRespacing: '', useKl: true });
    const t = get(L, 't');
    const fn: DiffusionModel<{ y: Tensor }> = (x, tt, k) => model.forward(x, tt, k.y);
    const kl = dKl.trainingLosses(fn, get(L, 'x_start'), t, { modelKwargs: { y: get(L, 'y') }, noise: get(L, 'noise') });
    assert.equal(kl.mse, undefined);
    checkPerSample('rescaled_kl / 1000', kl.loss.div(1000), get(L, 'vb'), t.toArray(), tolFor('vb'));
    dKl.dispose();
  }));
});

test('normalKl matches the closed form; numbers broadcast', () => {
  torch.scope(() => {
    const m1 = torch.tensor([0.3, -1.2], { dtype: 'float64' });
    const lv1 = torch.tensor([-0.5, 0.7], { dtype: 'float64' });
    const kl = normalKl(m1, lv1, 0.1, -0.2).toArray();
    const want = [0, 1].map((i) => {
      const [a, b] = [[0.3, -0.5], [-1.2, 0.7]][i];
      return 0.5 * (-1 + -0.2 - b + Math.exp(b + 0.2) + (a - 0.1) ** 2 * Math.exp(0.2));
    });
    kl.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-14));
    assert.equal(normalKl(m1, lv1, m1, lv1).abs().max().item(), 0);
  });
});
