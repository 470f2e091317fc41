// The SD VAE (AutoencoderKL) against golden outputs of the official diffusers code
// (shared/fixtures/vae-ref, weights regenerated here from the manifest's formula), the ldm key
// layout against the fixture's key map, and the loaders on small files written here.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { get, loadFixture } from './helpers/dit-ref';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import {
  AutoencoderKL, decodeLatents, encodeLatents, SD_VAE_CONFIG, VAE_SCALING_FACTOR, VaeConfig, vaeConfig,
} from '../src/models/vae';
import {
  diffusersKeyToLdm, ldmKeyToDiffusers, ldmToDiffusers, loadVae, loadVaeWeights, readVaeConfig,
} from '../src/models/vae-io';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'vae-ref');
const present = ['weights-manifest.json', 'vae-ref.safetensors', 'vae-ref-f64.safetensors', 'ldm-key-map.json', 'state-dict-keys.json']
  .every((f) => fs.existsSync(path.join(FIXTURES, f)));
const skip = present ? false : `fixtures in ${FIXTURES} are absent`;
if (!present) console.log(`# skipping VAE fixture tests: ${FIXTURES} not found`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-vae-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function readJson<T>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8')) as T;
}

interface ManifestEntry { k: number; key: string; shape: number[]; numel: number; rule: string; fan_in?: number; sha256: string }

/** The manifest's formula: tensor k, element i -> float32(rule(sin(0.37 i + 1.3 k + 0.5))). */
function formulaTensor(e: ManifestEntry): Float32Array {
  const out = new Float32Array(e.numel);
  const base = 1.3 * e.k;
  for (let i = 0; i < e.numel; i++) {
    const s = Math.sin(0.37 * i + base + 0.5);
    let v: number;
    switch (e.rule) {
      case 'fan_in': v = (1.0 / Math.sqrt(e.fan_in!)) * s; break;
      case 'small': v = 0.01 * s; break;
      case 'norm_weight': v = 1.0 + 0.1 * s; break;
      case 'running_var': v = 1.0 + 0.1 * Math.abs(s); break;
      default: throw new Error(`manifest: unknown rule '${e.rule}' for ${e.key}`);
    }
    out[i] = v; // Float32Array stores round-to-nearest-even, as Math.fround
  }
  return out;
}

let cachedWeights: Map<string, Tensor> | undefined;
/** The fixture's diffusers state dict, rebuilt from the formula and checked against every sha256. */
function fixtureWeights(): Map<string, Tensor> {
  if (cachedWeights) return cachedWeights;
  const manifest = readJson<{ tensors: ManifestEntry[] }>('weights-manifest.json');
  const out = new Map<string, Tensor>();
  for (const e of manifest.tensors) {
    const data = formulaTensor(e);
    const hash = crypto.createHash('sha256').update(new Uint8Array(data.buffer)).digest('hex');
    assert.equal(hash, e.sha256, `regenerated ${e.key} differs from the manifest's sha256`);
    out.set(e.key, torch.fromTypedArray(data, e.shape).keep());
  }
  cachedWeights = out;
  return out;
}

let cachedModel: AutoencoderKL | undefined;
function fixtureModel(): AutoencoderKL {
  if (!cachedModel) {
    const manifest = readJson<{ config: Record<string, unknown> }>('weights-manifest.json');
    assert.equal(manifest.config.scaling_factor, VAE_SCALING_FACTOR);
    cachedModel = new AutoencoderKL(SD_VAE_CONFIG);
    cachedModel.loadStateDict(fixtureWeights(), { what: 'vae-ref formula weights' });
  }
  return cachedModel;
}

function loadVaeFixture(name: string): Map<string, Tensor> {
  return loadFixture(FIXTURES, name);
}

/** max|y - ref| / max|ref|, in float64. */
function relErr(y: Tensor, ref: Tensor): number {
  return torch.scope(() => {
    assert.deepEqual(y.shape, ref.shape);
    const r = ref.double();
    return y.double().sub(r).abs().max().item() / r.abs().max().item();
  });
}

/** The errors met, for the test's diagnostics. */
const errors: string[] = [];

function assertClose(y: Tensor, ref: Tensor, tol: number, what: string): void {
  const err = relErr(y, ref);
  errors.push(`${what} ${err.toExponential(1)}`);
  assert.ok(err <= tol, `${what}: rel max err ${err.toExponential(2)} > ${tol}`);
}

test('config: the fixture config.json reads as the SD VAE config; bad fields are named', () => {
  fs.mkdirSync(path.join(tmp, 'config'));
  const file = path.join(tmp, 'config', 'config.json');
  const sd = {
    _class_name: 'AutoencoderKL', _diffusers_version: '0.4.2', act_fn: 'silu', block_out_channels: [128, 256, 512, 512],
    down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'),
    in_channels: 3, latent_channels: 4, layers_per_block: 2, norm_num_groups: 32, out_channels: 3, sample_size: 256,
  };
  fs.writeFileSync(file, JSON.stringify(sd));
  assert.deepEqual(readVaeConfig(file), vaeConfig()); // scaling_factor absent: diffusers' default 0.18215
  fs.writeFileSync(file, JSON.stringify({ ...sd, layers_per_block: 'two' }));
  assert.throws(() => readVaeConfig(file), /config\.json: 'layers_per_block' must be a positive integer/);
  fs.writeFileSync(file, JSON.stringify({ ...sd, down_block_types: ['DownEncoderBlock2D'] }));
  assert.throws(() => readVaeConfig(file), /'down_block_types' must list "DownEncoderBlock2D" once per block_out_channels entry \(4\)/);
  fs.writeFileSync(file, JSON.stringify({ ...sd, _class_name: 'UNet2DModel' }));
  assert.throws(() => readVaeConfig(file), /_class_name is "UNet2DModel", expected "AutoencoderKL"/);
});

test('state dict keys, order and shapes equal diffusers AutoencoderKL (248 tensors, 83653863 parameters)', { skip }, () => {
  const ref = readJson<{ keys: { key: string; shape: number[] }[] }>('state-dict-keys.json').keys;
  const model = fixtureModel();
  const own = model.stateDict();
  assert.deepEqual([...own.keys()], ref.map((r) => r.key));
  for (const r of ref) assert.deepEqual(own.get(r.key)!.shape, r.shape, r.key);
  assert.equal(model.numParameters(), 83653863);
});

test('ldm key map: every diffusers key maps to the fixture ldm key and back', { skip }, () => {
  const map = readJson<{ diffusers_to_ldm: Record<string, string> }>('ldm-key-map.json').diffusers_to_ldm;
  const keys = [...fixtureModel().stateDict().keys()];
  assert.deepEqual(Object.keys(map).sort(), [...keys].sort());
  for (const k of keys) {
    assert.equal(diffusersKeyToLdm(k, 4), map[k], k);
    assert.equal(ldmKeyToDiffusers(map[k], 4), k, map[k]);
  }
});

test('ldm-layout and diffusers-layout state dicts hold the same weights', { skip }, () => {
  const { diffusers_to_ldm: map, ldm_shapes: shapes } = readJson<{
    diffusers_to_ldm: Record<string, string>; ldm_shapes: Record<string, number[]>;
  }>('ldm-key-map.json');
  const weights = fixtureWeights();
  // The ldm dict is built with the fixture's map (not ours), with ldm's 1x1-conv attention shapes.
  const ldm = new Map<string, Tensor>();
  for (const [k, t] of weights) ldm.set(map[k], t.reshape(shapes[map[k]]));
  assert.ok([...ldm.values()].some((t) => t.ndim === 4 && t.shape[2] === 1 && t.shape[0] === 512 && t.shape[1] === 512));
  const converted = ldmToDiffusers(ldm);
  assert.deepEqual([...converted.keys()].sort(), [...weights.keys()].sort());
  for (const [k, t] of weights) assert.ok(converted.get(k)!.equal(t), `${k} differs after the ldm round trip`);
  // Loading both layouts leaves identical parameters (the model ends holding the fixture weights).
  const model = fixtureModel();
  model.loadStateDict(converted, { what: 'ldm layout' });
  for (const [k, p] of model.stateDict()) assert.ok(p.equal(get(weights, k)), k);
  for (const t of ldm.values()) t.dispose();
});

test('float32: encode moments, mode, sample and decodes match diffusers within the README tolerances', { skip }, (t) => {
  errors.length = 0;
  const ref = loadVaeFixture('vae-ref.safetensors');
  const model = fixtureModel();
  const ENC = 2e-3;
  const DEC = 1e-2;
  torch.noGrad(() => torch.scope(() => {
    const dist = model.encode(get(ref, 'x'));
    assertClose(dist.parameters, get(ref, 'latent_dist.parameters'), ENC, 'parameters');
    assertClose(dist.mean, get(ref, 'latent_dist.mean'), ENC, 'mean');
    assertClose(dist.logvar, get(ref, 'latent_dist.logvar'), ENC, 'logvar');
    assertClose(dist.std, get(ref, 'latent_dist.std'), ENC, 'std');
    const mode = dist.mode();
    assertClose(mode, get(ref, 'latent_dist.mode'), ENC, 'mode');
    // diffusers draws eps with torch.randn(generator=seed 2): same numbers here, then mean + std * eps.
    const eps = torch.randn([1, 4, 8, 8], { generator: new torch.Generator('cpu', 2) });
    assert.ok(eps.equal(get(ref, 'latent_dist.sample.eps')));
    assertClose(dist.sample(new torch.Generator('cpu', 2)), get(ref, 'latent_dist.sample'), ENC, 'sample');
    assertClose(model.decode(mode), get(ref, 'decode_mode.sample'), DEC, 'decode(mode)');
    assertClose(model.decode(get(ref, 'z')), get(ref, 'decode_z.sample'), DEC, 'decode(z)');
    // The scaling convention: encodeLatents(mode) = 0.18215 * mean.
    assertClose(encodeLatents(model, get(ref, 'x'), { mode: true }), dist.mean.mul(VAE_SCALING_FACTOR), 1e-6, 'encodeLatents');
    dist.dispose();
  }));
  t.diagnostic(`rel max err: ${errors.join(', ')}`);
  for (const x of ref.values()) x.dispose();
});

test('float64: every output matches the float64 reference to 1e-9', { skip }, (t) => {
  errors.length = 0;
  const ref = loadVaeFixture('vae-ref-f64.safetensors');
  const inputs = loadVaeFixture('vae-ref.safetensors');
  // The reference ran on the float32 inputs, cast.
  for (const name of ['x', 'z']) ref.set(name, get(inputs, name).double().keep());
  const model = fixtureModel().to('float64');
  assert.equal(model.dtype, 'float64');
  const TOL = 1e-9;
  torch.noGrad(() => torch.scope(() => {
    const dist = model.encode(get(ref, 'x'));
    for (const [name, t] of [['parameters', dist.parameters], ['mean', dist.mean], ['logvar', dist.logvar], ['std', dist.std]] as const) {
      assert.equal(t.dtype, 'float64');
      assertClose(t, get(ref, `latent_dist.${name}`), TOL, name);
    }
    const mode = dist.mode();
    assertClose(mode, get(ref, 'latent_dist.mode'), TOL, 'mode');
    assertClose(model.decode(mode), get(ref, 'decode_mode.sample'), TOL, 'decode(mode)');
    assertClose(model.decode(get(ref, 'z')), get(ref, 'decode_z.sample'), TOL, 'decode(z)');
    dist.dispose();
  }));
  t.diagnostic(`rel max err: ${errors.join(', ')}`);
  for (const x of [...ref.values(), ...inputs.values()]) x.dispose();
});

// ---------------------------------------------------------------------------------------------
// Loaders and the latent API on a small VAE (two levels of 32 channels), written to files here
// ---------------------------------------------------------------------------------------------

const TINY: Partial<VaeConfig> = { blockOutChannels: [32, 64], layersPerBlock: 1, sampleSize: 16 };
const TINY_JSON = {
  _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: [32, 64], layers_per_block: 1, latent_channels: 4,
  norm_num_groups: 32, in_channels: 3, out_channels: 3, sample_size: 16, scaling_factor: VAE_SCALING_FACTOR,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
};

function tinyModel(): AutoencoderKL {
  torch.manualSeed(7);
  return new AutoencoderKL(TINY);
}

function assertSameWeights(a: AutoencoderKL, b: AutoencoderKL): void {
  const sb = b.stateDict();
  for (const [k, t] of a.stateDict()) assert.ok(t.equal(sb.get(k)!), `${k} differs`);
}

test('loadVae: a diffusers folder (config.json + safetensors) and a pipeline folder with vae/', () => {
  const src = tinyModel();
  const dir = path.join(tmp, 'pipeline', 'vae');
  fs.mkdirSync(dir, { recursive: true });
  torch.saveSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), src.stateDict());
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(TINY_JSON));
  for (const where of [dir, path.dirname(dir)]) {
    const vae = loadVae(where);
    assert.deepEqual(vae.config.blockOutChannels, [32, 64]);
    assertSameWeights(vae, src);
  }
  const f64 = loadVae(dir, { dtype: 'float64' });
  assert.equal(f64.dtype, 'float64');
});

test('loadVae: an ldm-layout full SD checkpoint and legacy attention names give the same weights', () => {
  const src = tinyModel();
  const levels = TINY.blockOutChannels!.length;
  // ldm: renamed, attention projections as 1x1 convs, under first_stage_model. beside other models' keys.
  const full = new Map<string, Tensor>([['model.diffusion_model.input_blocks.0.0.weight', torch.ones([2, 2])]]);
  for (const [k, t] of src.stateDict()) {
    const ldm = diffusersKeyToLdm(k, levels);
    full.set(`first_stage_model.${ldm}`, /attn_1\.(q|k|v|proj_out)\.weight$/.test(ldm) ? t.reshape(t.shape[0], t.shape[1], 1, 1) : t);
  }
  const ckpt = path.join(tmp, 'sd-full.safetensors');
  torch.saveSafetensors(ckpt, full);
  const warnings: string[] = [];
  const fromLdm = loadVae(ckpt, { onWarning: (w) => warnings.push(w) });
  assert.match(warnings.join('\n'), /full Stable Diffusion checkpoint: using its \d+ first_stage_model\.\* tensors, ignoring 1 others/);
  // Inferred from the shapes (the sample size is not in the weights).
  assert.deepEqual(fromLdm.config, { ...src.config, sampleSize: SD_VAE_CONFIG.sampleSize });
  assertSameWeights(fromLdm, src);
  assert.equal(loadVaeWeights(ckpt).layout, 'ldm');
  // diffusers < 0.15: query/key/value/proj_attn.
  const legacy = new Map<string, Tensor>();
  for (const [k, t] of src.stateDict()) {
    legacy.set(k.replace(/\.to_q\./, '.query.').replace(/\.to_k\./, '.key.').replace(/\.to_v\./, '.value.').replace(/\.to_out\.0\./, '.proj_attn.'), t);
  }
  assert.ok(legacy.has('encoder.mid_block.attentions.0.proj_attn.weight'));
  const legacyFile = path.join(tmp, 'legacy.safetensors');
  torch.saveSafetensors(legacyFile, legacy);
  assertSameWeights(loadVae(legacyFile, { config: vaeConfig(TINY) }), src);
});

test('loadVaeWeights: a torch.save ldm training checkpoint (.ckpt, made by tools/make_vae_fixtures.py)', () => {
  const file = path.join(__dirname, '..', '..', 'test', 'fixtures', 'vae', 'ldm-sd-slice.ckpt');
  const { stateDict, layout, warnings } = loadVaeWeights(file, { config: vaeConfig() });
  assert.equal(layout, 'ldm');
  // The fixture's formula: tensor k of its list, element i -> float32(0.01 sin(0.37 i + 1.3 k)).
  const expected: [string, number, number[]][] = [
    ['encoder.down_blocks.0.resnets.0.conv_shortcut.weight', 0, [4, 2, 1, 1]],
    ['encoder.mid_block.attentions.0.to_q.weight', 1, [3, 3]],
    ['encoder.mid_block.attentions.0.group_norm.bias', 2, [3]],
    ['decoder.up_blocks.3.upsamplers.0.conv.bias', 3, [2]],
    ['decoder.conv_norm_out.weight', 4, [2]],
  ];
  assert.deepEqual([...stateDict.keys()], expected.map(([k]) => k));
  for (const [key, k, shape] of expected) {
    const t = stateDict.get(key)!;
    assert.deepEqual(t.shape, shape, key);
    const want = Float32Array.from({ length: t.numel }, (_, i) => 0.01 * Math.sin(0.37 * i + 1.3 * k));
    assert.deepEqual(t.data(), want, key);
  }
  const text = warnings.join('\n');
  assert.match(text, /using its 6 first_stage_model\.\* tensors, ignoring 1 others/);
  assert.match(text, /ignoring 1 training-only tensors \(loss\.logvar/);
  assert.match(text, /Namespace/); // hyper_parameters: skipped, never built
});

test('loadVae: errors name the file and the missing or unexpected keys', () => {
  const src = tinyModel();
  const sd = new Map(src.stateDict());
  sd.delete('decoder.conv_out.bias');
  sd.set('decoder.extra.weight', torch.ones([1]));
  const file = path.join(tmp, 'broken.safetensors');
  torch.saveSafetensors(file, sd);
  assert.throws(() => loadVae(file, { config: vaeConfig(TINY) }),
    (e: Error) => e.message.includes(file) && /missing keys \(1\): decoder\.conv_out\.bias/.test(e.message)
      && /unexpected keys \(1\): decoder\.extra\.weight/.test(e.message));
  const notVae = path.join(tmp, 'not-vae.safetensors');
  torch.saveSafetensors(notVae, { 'x_embedder.proj.weight': torch.ones([2]) });
  assert.throws(() => loadVae(notVae), /not-vae\.safetensors: not AutoencoderKL weights .*keys start x_embedder\.proj\.weight/);
  assert.throws(() => loadVae(path.join(tmp, 'absent')), /absent: no such VAE file or folder/);
});

test('encodeLatents/decodeLatents apply the scaling factor; sample follows the generator', () => {
  const vae = tinyModel();
  torch.noGrad(() => torch.scope(() => {
    const x = torch.rand([2, 3, 16, 16], { generator: new torch.Generator('cpu', 3) }).mul(2).sub(1);
    const dist = vae.encode(x);
    assert.deepEqual(dist.mean.shape, [2, 4, 8, 8]);
    const z = encodeLatents(vae, x, { generator: new torch.Generator('cpu', 5) });
    const eps = torch.randn([2, 4, 8, 8], { generator: new torch.Generator('cpu', 5) });
    assertClose(z, dist.mean.add(dist.std.mul(eps)).mul(VAE_SCALING_FACTOR), 1e-6, 'scaled sample');
    assert.ok(encodeLatents(vae, x, { mode: true }).equal(dist.mean.mul(VAE_SCALING_FACTOR)));
    assertClose(decodeLatents(vae, z), vae.decode(z.div(VAE_SCALING_FACTOR)), 1e-6, 'decodeLatents');
    assert.deepEqual(vae.decode(dist.mean).shape, [2, 3, 16, 16]);
    assert.throws(() => vae.encode(torch.zeros([1, 3, 15, 16])), /multiples of 2, got 15x16/);
    assert.throws(() => vae.decode(torch.zeros([1, 3, 8, 8])), /decode: expected \[N, 4, H, W\], got \[1, 3, 8, 8\]/);
    dist.dispose();
  }));
});

test('forward frees its intermediates; bfloat16 weights run (softmax upcast) close to float32', () => {
  const vae = tinyModel();
  const x = torch.rand([1, 3, 16, 16], { generator: new torch.Generator('cpu', 4) }).mul(2).sub(1).keep();
  const before = torch.liveTensorCount();
  const ref = torch.noGrad(() => vae.forward(x));
  assert.equal(torch.liveTensorCount() - before, 1, 'only the output stays alive');
  const bf16 = tinyModel().to('bfloat16');
  const y = torch.noGrad(() => bf16.forward(x));
  assert.equal(y.dtype, 'bfloat16');
  // bfloat16 keeps 8 bits of mantissa: a few percent through the network, far below a wrong model's O(1).
  assertClose(y, ref, 0.15, 'bfloat16 forward');
  for (const t of [x, ref, y]) t.dispose();
});
