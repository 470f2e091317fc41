// diffusers' ControlNetModel against the golden outputs of the official code
// (shared/fixtures/sd-controlnet-ref): residuals, the conditioning embedding, the UNet fed our own
// residuals, from_unet's copy and zero init (exactly zero residuals, bit-identical UNet output),
// real SD1.5 ControlNet keys and ControlNet-1.x key names, and the loaders.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { disposeAll, readSdJson, sdFormulaWeights } from './helpers/sd-formula-weights';
import {
  assertClose, errorsSeen, fixtureControlNet, fixtureUNet, refInputs, refTensor, skipUnlessSdRef,
} from './helpers/sd-unet-ref';
import { ControlNetModel } from '../src/models/sd/controlnet';
import { UNet2DConditionModel } from '../src/models/sd/unet-2d-condition';
import {
  ControlNetConfig, controlNetConfigFromDiffusers, controlNetConfigFromUNet, controlNetConfigToDiffusers,
  SD15_CONTROLNET_CONFIG, SD15_UNET_CONFIG,
} from '../src/models/sd/unet-config';
import { controlNetKeyToLdm, ldmToDiffusers, loadControlNet, saveDiffusersModel } from '../src/models/sd/unet-io';

const skip = skipUnlessSdRef('SD ControlNet fixture tests');
const REF = 'sd-controlnet-ref.safetensors';
const REF64 = 'sd-controlnet-ref-f64.safetensors';
const DEBUG = 'sd-controlnet-debug.safetensors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-sd-controlnet-'));
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  if (errorsSeen.length) console.log(`rel max errors: ${errorsSeen.join(', ')}`);
});

let cachedUNet: UNet2DConditionModel | undefined;
let cachedControlNet: ControlNetModel | undefined;
const unet = (): UNet2DConditionModel => (cachedUNet ??= fixtureUNet());
const controlnet = (): ControlNetModel => (cachedControlNet ??= fixtureControlNet());

function residualsOf(model: ControlNetModel, dtype: 'float32' | 'float64' = 'float32', o = {}): { down: Tensor[]; mid: Tensor } {
  const x = refInputs(dtype);
  const out = model.forward(x.latent, x.timesteps, x.context, x.cond, o);
  return { down: out.downBlockResSamples, mid: out.midBlockResSample };
}

interface KeysFile { config: Record<string, unknown>; full_config: Record<string, unknown>; num_params: number; keys: { key: string; shape: number[] }[] }

test('config: the ControlNet-1.1 config.json reads as SD15_CONTROLNET_CONFIG (= from_unet of SD1.5) and round-trips', { skip }, () => {
  const ref = readSdJson<KeysFile>('sd15-controlnet-keys.json');
  assert.deepEqual(controlNetConfigFromDiffusers(ref.full_config), SD15_CONTROLNET_CONFIG);
  assert.deepEqual(controlNetConfigFromDiffusers(ref.config), SD15_CONTROLNET_CONFIG);
  assert.deepEqual(controlNetConfigFromUNet(SD15_UNET_CONFIG), SD15_CONTROLNET_CONFIG);
  assert.deepEqual(controlNetConfigFromDiffusers(controlNetConfigToDiffusers(SD15_CONTROLNET_CONFIG)), SD15_CONTROLNET_CONFIG);
  assert.throws(() => controlNetConfigFromDiffusers({ ...ref.full_config, controlnet_conditioning_channel_order: 'rbg' }, 'cn.json'),
    /cn\.json: controlnetConditioningChannelOrder must be "rgb" or "bgr", got "rbg"/);
  assert.throws(() => controlNetConfigFromDiffusers({ ...ref.full_config, up_block_types: [] }, 'cn.json'),
    /unknown ControlNetModel field 'up_block_types'/);
});

test('tiny fixture ControlNet: state_dict keys, order and shapes equal the manifest (128 tensors)', { skip }, () => {
  const manifest = readSdJson<{ controlnet: { tensors: { key: string; shape: number[] }[] } }>('weights-manifest.json').controlnet.tensors;
  assert.deepEqual([...controlnet().stateDict()].map(([k, t]) => [k, t.shape]), manifest.map((e) => [e.key, e.shape]));
  assert.equal(controlnet().numParameters(), 829328);
});

test('real SD1.5 ControlNet: 340 keys in state_dict order with their shapes, 361,279,120 parameters; ControlNet-1.x names by rule', { skip }, () => {
  const ref = readSdJson<KeysFile>('sd15-controlnet-keys.json');
  const model = torch.nn.init.skipInit(() => new ControlNetModel(controlNetConfigFromDiffusers(ref.full_config)));
  try {
    const sd = model.stateDict();
    assert.deepEqual([...sd].map(([k, t]) => [k, t.shape]), ref.keys.map((e) => [e.key, e.shape]));
    assert.equal(model.numParameters(), ref.num_params);
    const map = readSdJson<{ controlnet: { diffusers_to_ldm: Record<string, string> } }>('sd15-ldm-key-map.json').controlnet.diffusers_to_ldm;
    const keys = [...sd.keys()];
    assert.equal(Object.keys(map).length, keys.length);
    assert.deepEqual(keys.map((k) => [k, controlNetKeyToLdm(k, model.config as ControlNetConfig)]), keys.map((k) => [k, map[k]]));
    const back = ldmToDiffusers(new Map(keys.map((k) => [map[k], sd.get(k)!])), model);
    assert.deepEqual([...back.keys()].sort(), [...keys].sort());
  } finally {
    for (const p of model.parameters()) p.dispose();
  }
});

test('float32: the 5 residuals, the conditioning embedding and every intermediate within 1e-5 of diffusers', { skip }, () => {
  const x = refInputs('float32');
  const traced: string[] = [];
  torch.scope(() => {
    const out = controlnet().forward(x.latent, x.timesteps, x.context, x.cond, {
      trace: (name, t) => {
        traced.push(name);
        assertClose(t, refTensor(DEBUG, `debug.controlnet/controlnet.${name}`), 1e-5, `debug controlnet.${name}`);
      },
    });
    assert.equal(out.downBlockResSamples.length, 4);
    out.downBlockResSamples.forEach((r, i) => {
      assertClose(r, refTensor(REF, `controlnet.down_block_res_samples.${i}`), 1e-5, `controlnet.down_block_res_samples.${i}`);
    });
    assertClose(out.midBlockResSample, refTensor(REF, 'controlnet.mid_block_res_sample'), 1e-5, 'controlnet.mid_block_res_sample');
    assertClose(controlnet().embedCondition(x.cond), refTensor(REF, 'controlnet.controlnet_cond_embedding'), 1e-5, 'controlnet.controlnet_cond_embedding');
  });
  assert.deepEqual(traced, ['time_proj', 'time_embedding', 'conv_in', 'controlnet_cond_embedding', 'down_blocks.0', 'down_blocks.1', 'mid_block']);
});

test('float32: the UNet fed our own residuals gives unet_controlnet.sample within 1e-5', { skip }, () => {
  const x = refInputs('float32');
  torch.scope(() => {
    const r = residualsOf(controlnet());
    const out = unet().forward(x.latent, x.timesteps, x.context, { downBlockAdditionalResiduals: r.down, midBlockAdditionalResidual: r.mid });
    assertClose(out, refTensor(REF, 'unet_controlnet.sample'), 1e-5, 'unet_controlnet.sample');
  });
});

test('float64: residuals, conditioning embedding and unet_controlnet.sample within 1e-10', { skip }, () => {
  const cn = fixtureControlNet().to('float64');
  const un = fixtureUNet().to('float64');
  const x = refInputs('float64');
  torch.scope(() => {
    const r = residualsOf(cn, 'float64');
    r.down.forEach((t, i) => assertClose(t, refTensor(REF64, `controlnet.down_block_res_samples.${i}`), 1e-10, `f64 controlnet.down_block_res_samples.${i}`));
    assertClose(r.mid, refTensor(REF64, 'controlnet.mid_block_res_sample'), 1e-10, 'f64 controlnet.mid_block_res_sample');
    assertClose(cn.embedCondition(x.cond), refTensor(REF64, 'controlnet.controlnet_cond_embedding'), 1e-10, 'f64 controlnet.controlnet_cond_embedding');
    const out = un.forward(x.latent, x.timesteps, x.context, { downBlockAdditionalResiduals: r.down, midBlockAdditionalResidual: r.mid });
    assertClose(out, refTensor(REF64, 'unet_controlnet.sample'), 1e-10, 'f64 unet_controlnet.sample');
  });
});

test('fromUNet: copies conv_in, time_embedding, down_blocks, mid_block; zero convs zero; residuals exactly 0; UNet output bit-identical', { skip }, () => {
  const manifest = readSdJson<{ controlnet_from_unet: { tensors: { key: string; source: string; unet_key?: string }[] } }>('weights-manifest.json');
  const model = ControlNetModel.fromUNet(unet());
  const sd = model.stateDict();
  const unetSd = unet().stateDict();
  const counts: Record<string, number> = { unet: 0, zero: 0, formula: 0 };
  for (const e of manifest.controlnet_from_unet.tensors) {
    counts[e.source]++;
    const t = sd.get(e.key)!;
    if (e.source === 'unet') assert.ok(t.equal(unetSd.get(e.unet_key!)!), `${e.key} is not the UNet's`);
    else if (e.source === 'zero') assert.equal(t.abs().max().item(), 0, `${e.key} is not zero`);
    else assert.ok(t.abs().max().item() > 0, `${e.key} (random init) is zero`);
  }
  assert.deepEqual(counts, { unet: 102, zero: 12, formula: 14 });
  assert.deepEqual([...sd.keys()], manifest.controlnet_from_unet.tensors.map((e) => e.key));
  const x = refInputs('float32');
  const check = (cn: ControlNetModel): void => torch.scope(() => {
    const r = residualsOf(cn);
    for (const t of [...r.down, r.mid]) assert.equal(t.abs().max().item(), 0);
    assert.deepEqual(r.down.map((t) => t.shape), [[2, 32, 16, 16], [2, 32, 16, 16], [2, 32, 8, 8], [2, 64, 8, 8]]);
    const plain = unet().forward(x.latent, x.timesteps, x.context);
    const withZero = unet().forward(x.latent, x.timesteps, x.context, { downBlockAdditionalResiduals: r.down, midBlockAdditionalResidual: r.mid });
    assert.ok(withZero.equal(plain), 'UNet output with from_unet residuals differs from the plain UNet output');
    assertClose(withZero, refTensor(REF, 'unet_controlnet_from_unet.sample'), 1e-5, 'unet_controlnet_from_unet.sample');
  });
  check(model);
  // With the fixture's values for the 14 randomly initialised tensors, the whole state dict is the fixture's.
  const formula = sdFormulaWeights('controlnet_from_unet');
  model.loadStateDict(formula);
  for (const [k, t] of formula) assert.ok(sd.get(k)!.equal(t), k);
  disposeAll(formula);
  check(model);
});

test('fromUNet of a float64 UNet copies its weights without a float32 round trip', { skip }, () => {
  const un = fixtureUNet().to('float64');
  torch.noGrad(() => un.conv_in.weight.add_(1e-12));
  const cn = ControlNetModel.fromUNet(un);
  assert.equal(cn.dtype, 'float64');
  assert.ok(cn.conv_in.weight.equal(un.conv_in.weight));
});

test('conditioning scale, guess mode, BGR channel order and global pooling act as in diffusers', { skip }, () => {
  torch.scope(() => {
    const full = residualsOf(controlnet());
    const half = residualsOf(controlnet(), 'float32', { conditioningScale: 0.5 });
    full.down.forEach((t, i) => assert.ok(half.down[i].equal(t.mul(0.5))));
    assert.ok(half.mid.equal(full.mid.mul(0.5)));
    // guess_mode: logspace(-1, 0, 5) from the shallowest residual to the mid block.
    const guess = residualsOf(controlnet(), 'float32', { guessMode: true });
    [0.1, 10 ** -0.75, 10 ** -0.5, 10 ** -0.25].forEach((s, i) => assertClose(guess.down[i], full.down[i].mul(s), 1e-7, `guess ${i}`));
    assert.ok(guess.mid.equal(full.mid));
    // BGR: the same model on the flipped image.
    const bgr = new ControlNetModel({ ...controlnet().config, controlnetConditioningChannelOrder: 'bgr' });
    bgr.loadStateDict(controlnet().stateDict());
    const x = refInputs('float32');
    assert.ok(bgr.embedCondition(x.cond.flip([1])).equal(controlnet().embedCondition(x.cond)));
    const pooled = new ControlNetModel({ ...controlnet().config, globalPoolConditions: true });
    pooled.loadStateDict(controlnet().stateDict());
    const p = residualsOf(pooled);
    assertClose(p.down[3], full.down[3].mean([2, 3], true), 1e-6, 'global pool');
    assert.deepEqual(p.mid.shape, [2, 64, 1, 1]);
  });
});

test('bad inputs are named: condition channels, condition size, batch', { skip }, () => {
  const x = refInputs('float32');
  torch.scope(() => {
    assert.throws(() => controlnet().forward(x.latent, x.timesteps, x.context, x.latent),
      /controlnet_cond must be \[2, 3, H, W\], got \[2, 4, 16, 16\]/);
    assert.throws(() => controlnet().forward(x.latent, x.timesteps, x.context, x.cond.slice(2, 0, 64).slice(3, 0, 64)),
      /the condition image embeds to \[2,32,8,8\] but the latent to \[2,32,16,16\] \(the condition image must be 8x the latent's size\)/);
  });
});

test('forward frees its intermediates: the live tensor count is the same after each call', { skip }, () => {
  const step = (): void => torch.scope(() => {
    residualsOf(controlnet());
  });
  step();
  const before = torch.liveTensorCount();
  for (let i = 0; i < 3; i++) step();
  assert.equal(torch.liveTensorCount(), before);
});

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

function sameResiduals(a: ControlNetModel, b: ControlNetModel): void {
  torch.scope(() => {
    const ra = residualsOf(a);
    const rb = residualsOf(b);
    [...ra.down, ra.mid].forEach((t, i) => assert.ok(t.equal([...rb.down, rb.mid][i]), `residual ${i} differs`));
  });
}

test('saveDiffusersModel writes a diffusers folder that loadControlNet reads back (also as a pipeline controlnet/)', { skip }, () => {
  const dir = path.join(tmp, 'pipe', 'controlnet');
  saveDiffusersModel(controlnet(), dir);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(json._class_name, 'ControlNetModel');
  assert.deepEqual(json.conditioning_embedding_out_channels, [16, 32, 96, 256]);
  const back = loadControlNet(path.join(tmp, 'pipe'));
  assert.deepEqual(back.config, controlnet().config);
  sameResiduals(back, controlnet());
});

test('loadControlNet: ControlNet 1.1 (bare ldm names) and 1.0 (control_model.* in a full cldm checkpoint) files', { skip }, () => {
  const config = controlnet().config as ControlNetConfig;
  const bare = new Map<string, Tensor>();
  for (const [k, t] of controlnet().stateDict()) bare.set(controlNetKeyToLdm(k, config), t);
  assert.ok(bare.has('input_hint_block.14.weight') && bare.has('zero_convs.3.0.bias') && bare.has('middle_block_out.0.weight'));
  const v11 = path.join(tmp, 'control_v11p_tiny.safetensors');
  torch.saveSafetensors(v11, bare);
  sameResiduals(loadControlNet(v11, { config }), controlnet());
  const full = new Map([...bare].map(([k, t]) => [`control_model.${k}`, t]));
  full.set('model.diffusion_model.input_blocks.0.0.weight', torch.zeros([1]));
  full.set('first_stage_model.encoder.conv_in.bias', torch.zeros([1]));
  const v10 = path.join(tmp, 'control_sd15_tiny.safetensors');
  torch.saveSafetensors(v10, full);
  const warnings: string[] = [];
  sameResiduals(loadControlNet(v10, { config, onWarning: (w) => warnings.push(w) }), controlnet());
  assert.match(warnings.join('\n'), /using its 128 control_model\.\* tensors, ignoring 2 others/);
  // An extra tensor in a ControlNet file is named, under its ldm name.
  bare.set('input_hint_block.16.weight', torch.zeros([1]));
  const extra = path.join(tmp, 'extra.safetensors');
  torch.saveSafetensors(extra, bare);
  assert.throws(() => loadControlNet(extra, { config }), /unexpected keys \(1\): input_hint_block\.16\.weight/);
});

test('a ControlNet on CUDA takes a condition image on the CPU (as generate passes it)', { skip: skip || (!torch.cuda.isAvailable() && 'needs CUDA') }, () => {
  const cn = fixtureControlNet().to('cuda');
  const x = refInputs('float32');
  torch.scope(() => {
    const emb = cn.embedCondition(x.cond);
    assert.ok(emb.device.startsWith('cuda'), `embedding on ${emb.device}`);
    assertClose(emb.to({ device: 'cpu' }), refTensor(REF, 'controlnet.controlnet_cond_embedding'), 1e-5, 'cuda controlnet.controlnet_cond_embedding');
  });
});
