// The FID Inception-v3 against pytorch-fid's own network (../shared/fixtures/inception-ref: golden
// pool3 features from formula weights, regenerated here from the manifest), the state_dict naming
// of the standard weights file, and loading (legacy torch.save files, strict key checks).
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import * as torch from '../src/torch';
import { FidInceptionV3, fidInceptionFeatures } from '../src/models/inception';
import { loadFidInception, readLegacyTorchStateDict, wrapperKeyToInception3 } from '../src/models/inception-io';

const ref = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'inception-ref');
const skip = fs.existsSync(path.join(ref, 'weights-manifest.json')) ? false : 'shared/fixtures/inception-ref is not present';
const fixtures = path.join(__dirname, '..', '..', 'test', 'fixtures', 'inception');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-inception-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface ManifestEntry { k: number; key: string; shape: number[]; numel: number; rule: string; fan_in?: number; sha256: string }

/** The README's formula, tensor k, element i: float32 of a rule applied to sin(0.37 i + 1.3 k + 0.5) in float64. */
function formulaTensor(e: ManifestEntry): Float32Array {
  const out = new Float32Array(e.numel);
  const scale = e.rule === 'fan_in' ? 1.0 / Math.sqrt(e.fan_in!) : 0;
  for (let i = 0; i < e.numel; i++) {
    const s = Math.sin(0.37 * i + 1.3 * e.k + 0.5);
    switch (e.rule) {
      case 'fan_in': out[i] = scale * s; break;
      case 'small': out[i] = 0.01 * s; break;
      case 'norm_weight': out[i] = 1.0 + 0.1 * s; break;
      case 'running_var': out[i] = 1.0 + 0.1 * Math.abs(s); break;
      default: throw new Error(`unknown rule ${e.rule} for ${e.key}`);
    }
  }
  return out;
}

let cached: Map<string, torch.Tensor> | undefined;
/** The formula weights by state_dict key (num_batches_tracked excluded), each checked against its sha256. */
function formulaWeights(): Map<string, torch.Tensor> {
  if (cached) return cached;
  const manifest = JSON.parse(fs.readFileSync(path.join(ref, 'weights-manifest.json'), 'utf8')) as { tensors: ManifestEntry[] };
  cached = new Map();
  for (const e of manifest.tensors) {
    const data = formulaTensor(e);
    const sha = createHash('sha256').update(new Uint8Array(data.buffer)).digest('hex');
    assert.equal(sha, e.sha256, `regenerated ${e.key} differs from the manifest's sha256`);
    cached.set(e.key, torch.fromTypedArray(data, e.shape).keep());
  }
  return cached;
}

function formulaModel(dtype: torch.DType = 'float32'): FidInceptionV3 {
  const model = new FidInceptionV3();
  const sd = new Map(formulaWeights());
  for (const [k, t] of model.stateDict()) if (k.endsWith('num_batches_tracked')) sd.set(k, t);
  model.loadStateDict(sd);
  return model.to(dtype);
}

function relMaxErr(y: torch.Tensor, yRef: torch.Tensor): number {
  return torch.scope(() => {
    const r = yRef.to('float64');
    return y.to('float64').sub(r).abs().max().item() / r.abs().max().item();
  });
}

test('state_dict keys, order, shapes and dtypes equal fid_inception_v3().state_dict()', { skip }, () => {
  const expected = JSON.parse(fs.readFileSync(path.join(ref, 'state-dict-keys.json'), 'utf8')) as
    { keys: { key: string; shape: number[]; dtype: string }[]; wrapper_to_inception3: Record<string, string> };
  const model = new FidInceptionV3();
  const got = [...model.stateDict()].map(([key, t]) => ({ key, shape: t.shape, dtype: t.dtype }));
  assert.deepEqual(got, expected.keys);
  // pytorch-fid's wrapper names (blocks.i.j....) map onto the same keys.
  for (const [wrapperKey, key] of Object.entries(expected.wrapper_to_inception3)) assert.equal(wrapperKeyToInception3(wrapperKey), key);
  assert.equal(wrapperKeyToInception3('blocks.4.0.conv.weight'), null);
});

test('float32 features and stages match pytorch-fid (rel max err <= 1e-4)', { skip }, () => {
  const golden = torch.loadSafetensors(path.join(ref, 'inception-ref.safetensors'));
  const debug = torch.loadSafetensors(path.join(ref, 'inception-debug.safetensors'));
  const model = formulaModel('float32');
  const seen: string[] = [];
  const features = torch.noGrad(() => model.forward(golden.get('x')!, (name, t) => {
    const want = debug.get(`debug.f32/${name}`);
    assert.ok(want, `no golden slice for stage ${name}`);
    const slice = torch.scope(() => t.slice(1, 0, 8).slice(2, 0, 8).slice(3, 0, 8));
    const err = relMaxErr(slice, want);
    assert.ok(err <= 1e-4, `stage ${name}: rel max err ${err}`);
    seen.push(name);
  }));
  assert.equal(seen.length, debug.size, `stages seen: ${seen.join(', ')}`);
  assert.deepEqual(features.shape, [2, 2048]);
  const err = relMaxErr(features, golden.get('features')!);
  assert.ok(err <= 1e-4, `features: rel max err ${err}`);
});

test('float64 features match pytorch-fid in float64 (rel max err <= 1e-11), which sees the input path', { skip }, () => {
  const x = torch.loadSafetensors(path.join(ref, 'inception-ref.safetensors')).get('x')!.to('float64');
  const golden = torch.loadSafetensors(path.join(ref, 'inception-ref-f64.safetensors')).get('features')!;
  const model = formulaModel('float64');
  const features = torch.noGrad(() => model.forward(x));
  assert.equal(features.dtype, 'float64');
  const err = relMaxErr(features, golden);
  assert.ok(err <= 1e-11, `features: rel max err ${err}`);
  // The README's sensitivity: inputs not scaled to [-1, 1] move the features by 3e-9, far above 1e-11.
  const unnormalised = new FidInceptionV3({ normalizeInput: false }).to('float64');
  unnormalised.loadStateDict(model.stateDict());
  const wrong = torch.noGrad(() => unnormalised.forward(x));
  assert.ok(relMaxErr(wrong, golden) > 1e-10, 'the float64 check cannot see the input normalisation');
});

test('fidInceptionFeatures: batches, uint8 and [-1, 1] input give the features of [0, 1] float input', { skip }, () => {
  const x = torch.loadSafetensors(path.join(ref, 'inception-ref.safetensors')).get('x')!;
  const model = formulaModel('float64');
  const u8 = torch.scope(() => x.mul(255).round().to('uint8'));
  const direct = torch.noGrad(() => model.forward(torch.scope(() => u8.to('float64').div(255))));
  const live = torch.liveTensorCount();
  const batched = fidInceptionFeatures(model, u8, { batchSize: 1 });
  assert.equal(torch.liveTensorCount(), live + 1, 'fidInceptionFeatures leaves only its result alive');
  assert.equal(batched.dtype, 'float32');
  assert.deepEqual(batched.shape, [2, 2048]);
  assert.ok(relMaxErr(batched, direct) <= 1e-6);
  const symmetric = fidInceptionFeatures(model, torch.scope(() => x.mul(2).sub(1)), { inputRange: '-1,1' });
  const golden = torch.loadSafetensors(path.join(ref, 'inception-ref-f64.safetensors')).get('features')!;
  assert.ok(relMaxErr(symmetric, golden) <= 1e-6);
  assert.throws(() => fidInceptionFeatures(model, torch.zeros([2, 4, 8, 8])), /expected images \[N, 3, H, W\]/);
});

test('the legacy (pre-1.6) torch.save format reads as torch.load does', () => {
  const sd = readLegacyTorchStateDict(path.join(fixtures, 'legacy-state-dict.pth'));
  const expected = JSON.parse(fs.readFileSync(path.join(fixtures, 'legacy-expected.json'), 'utf8')).tensors as
    Record<string, { dtype: string; shape: number[]; values: number[] }>;
  assert.deepEqual([...sd.keys()], Object.keys(expected));
  for (const [k, raw] of sd) {
    const t = torch.tensorFromRaw(raw);
    assert.equal(t.dtype, expected[k].dtype, k);
    assert.deepEqual(t.shape, expected[k].shape, k);
    assert.deepEqual(torch.scope(() => t.to('float64').flatten().toArray()), expected[k].values, k);
  }
});

test('loadFidInception: a re-saved weights file loads strictly; a missing or extra key is named', { skip }, () => {
  const full = path.join(tmp, 'pt_inception.safetensors');
  torch.saveSafetensors(full, formulaWeights());   // without num_batches_tracked, as older files
  const model = loadFidInception(full, { dtype: 'float64' });
  assert.equal(model.Mixed_7c.branch_pool.conv.weight.dtype, 'float64');
  assert.deepEqual(model.Mixed_6b.branch7x7_2.conv.weight.toArray(),
    formulaWeights().get('Mixed_6b.branch7x7_2.conv.weight')!.toArray());

  const missingKey = 'Mixed_6c.branch7x7dbl_4.bn.running_var';
  const missing = new Map(formulaWeights());
  missing.delete(missingKey);
  missing.set('AuxLogits.fc.weight', torch.zeros([1]));
  const bad = path.join(tmp, 'missing.safetensors');
  torch.saveSafetensors(bad, missing);
  assert.throws(() => loadFidInception(bad), (e: Error) => {
    assert.ok(e.message.includes(bad), e.message);
    assert.match(e.message, /missing keys \(1\): Mixed_6c\.branch7x7dbl_4\.bn\.running_var/);
    assert.match(e.message, /unexpected keys \(1\): AuxLogits\.fc\.weight/);
    return true;
  });
  assert.throws(() => loadFidInception(path.join(tmp, 'absent.pth')), /not found.*nothing is downloaded/);
});

test('loadFidInception reads pytorch-fid wrapper names (blocks.i.j...) without fc', { skip }, () => {
  const keys = JSON.parse(fs.readFileSync(path.join(ref, 'state-dict-keys.json'), 'utf8')).wrapper_to_inception3 as Record<string, string>;
  const wrapper = new Map<string, torch.Tensor>();
  for (const [w, k] of Object.entries(keys)) if (formulaWeights().has(k)) wrapper.set(w, formulaWeights().get(k)!);
  const file = path.join(tmp, 'wrapper.safetensors');
  torch.saveSafetensors(file, wrapper);
  const model = loadFidInception(file);
  assert.deepEqual(model.Conv2d_4a_3x3.bn.running_var.toArray(), formulaWeights().get('Conv2d_4a_3x3.bn.running_var')!.toArray());
});
