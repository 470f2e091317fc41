// diffusers' UNet2DConditionModel against the golden outputs of the official code
// (shared/fixtures/sd-controlnet-ref, tiny SD1.5-structured config, formula weights), real SD1.5's
// state_dict keys and ldm key map, and the loaders on small files written here.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { readSdJson } from './helpers/sd-formula-weights';
import {
  assertClose, errorsSeen, fixtureUNet, refInputs, refTensor, skipUnlessSdRef,
} from './helpers/sd-unet-ref';
import { UNet2DConditionModel } from '../src/models/sd/unet-2d-condition';
import {
  SD15_UNET_CONFIG, UNetConfig, unetConfigFromDiffusers, unetConfigToDiffusers,
} from '../src/models/sd/unet-config';
import { ldmToDiffusers, loadUNet, saveDiffusersModel, unetKeyToLdm } from '../src/models/sd/unet-io';

const skip = skipUnlessSdRef('SD UNet fixture tests');
const REF = 'sd-controlnet-ref.safetensors';
const REF64 = 'sd-controlnet-ref-f64.safetensors';
const DEBUG = 'sd-controlnet-debug.safetensors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-sd-unet-'));
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  if (errorsSeen.length) console.log(`rel max errors: ${errorsSeen.join(', ')}`);
});

let cached: UNet2DConditionModel | undefined;
function unet(): UNet2DConditionModel {
  return (cached ??= fixtureUNet());
}

/** The fixture's ControlNet residuals (inputs to the UNet call `unet_controlnet`). */
function refResiduals(file: typeof REF | typeof REF64): { down: Tensor[]; mid: Tensor } {
  return {
    down: [0, 1, 2, 3].map((i) => refTensor(file, `controlnet.down_block_res_samples.${i}`)),
    mid: refTensor(file, 'controlnet.mid_block_res_sample'),
  };
}

interface KeysFile { config: Record<string, unknown>; full_config: Record<string, unknown>; num_params: number; keys: { key: string; shape: number[] }[] }

test('config: SD1.5 config.json reads as SD15_UNET_CONFIG and round-trips; bad fields are named', { skip }, () => {
  const sd15 = readSdJson<KeysFile>('sd15-unet-keys.json');
  assert.deepEqual(unetConfigFromDiffusers(sd15.full_config), SD15_UNET_CONFIG);
  assert.deepEqual(unetConfigFromDiffusers(sd15.config), SD15_UNET_CONFIG); // defaults fill the rest
  assert.deepEqual(unetConfigFromDiffusers(unetConfigToDiffusers(SD15_UNET_CONFIG)), SD15_UNET_CONFIG);
  const bad = (patch: Record<string, unknown>, re: RegExp): void => {
    assert.throws(() => unetConfigFromDiffusers({ ...sd15.full_config, ...patch }, 'unet/config.json'), re);
  };
  bad({ class_embed_type: 'timestep' }, /unet\/config\.json: 'class_embed_type' = "timestep" is not supported/);
  bad({ addition_embed_type: 'text_time' }, /'addition_embed_type' = "text_time" is not supported/);
  bad({ some_new_field: 1 }, /unknown UNet2DConditionModel field 'some_new_field'/);
  bad({ _class_name: 'UNet2DModel' }, /_class_name is "UNet2DModel", expected "UNet2DConditionModel"/);
  bad({ up_block_types: ['UpBlock2D'] }, /upBlockTypes must list CrossAttnUpBlock2D or UpBlock2D once per block \(4\)/);
  bad({ attention_head_dim: 7 }, /block 0: 320 channels do not split into 7 attention heads/);
  bad({ attention_head_dim: [5, 10] }, /unet\/config\.json: attentionHeadDim: expected one value per block \(4\), got 2/);
  bad({ down_block_types: ['CrossAttnDownBlock2D', 'SimpleDown', 'DownBlock2D', 'DownBlock2D'] }, /down block type "SimpleDown" is not supported/);
});

test('tiny fixture UNet: state_dict keys, order and shapes equal the manifest (208 tensors)', { skip }, () => {
  const manifest = readSdJson<{ unet: { tensors: { key: string; shape: number[] }[] } }>('weights-manifest.json').unet.tensors;
  const own = unet().stateDict();
  assert.deepEqual([...own].map(([k, t]) => [k, t.shape]), manifest.map((e) => [e.key, e.shape]));
  assert.equal(unet().numParameters(), 792964);
});

test('real SD1.5 UNet: 686 keys in state_dict order with their shapes, 859,520,964 parameters', { skip }, () => {
  // Built without drawing random weights (nn.init.skipInit): 0.5 s instead of ~12 s, memory untouched.
  const ref = readSdJson<KeysFile>('sd15-unet-keys.json');
  const model = torch.nn.init.skipInit(() => new UNet2DConditionModel(unetConfigFromDiffusers(ref.full_config)));
  try {
    assert.deepEqual([...model.stateDict()].map(([k, t]) => [k, t.shape]), ref.keys.map((e) => [e.key, e.shape]));
    assert.equal(model.numParameters(), ref.num_params);
    // The ldm names of every key, by rule, equal the fixture's map (convert_unet_state_dict's output).
    const map = readSdJson<{ unet: { diffusers_to_ldm: Record<string, string> } }>('sd15-ldm-key-map.json').unet.diffusers_to_ldm;
    const keys = [...model.stateDict().keys()];
    assert.deepEqual(keys.map((k) => [k, unetKeyToLdm(k, model.config)]), keys.map((k) => [k, map[k]]));
    assert.equal(Object.keys(map).length, keys.length);
    const back = ldmToDiffusers(new Map(keys.map((k) => [map[k], model.stateDict().get(k)!])), model);
    assert.deepEqual([...back.keys()].sort(), [...keys].sort());
  } finally {
    for (const p of model.parameters()) p.dispose();
  }
});

test('float32: unet.sample within 1e-5 of diffusers', { skip }, () => {
  const x = refInputs('float32');
  torch.scope(() => {
    assertClose(unet().forward(x.latent, x.timesteps, x.context), refTensor(REF, 'unet.sample'), 1e-5, 'unet.sample');
  });
});

test('float32: with the fixture ControlNet residuals, unet_controlnet.sample and every intermediate within 1e-5', { skip }, () => {
  const x = refInputs('float32');
  const res = refResiduals(REF);
  const traced: string[] = [];
  torch.scope(() => {
    const out = unet().forward(x.latent, x.timesteps, x.context, {
      downBlockAdditionalResiduals: res.down, midBlockAdditionalResidual: res.mid,
      trace: (name, t) => {
        traced.push(name);
        assertClose(t, refTensor(DEBUG, `debug.unet_controlnet/unet.${name}`), 1e-5, `debug unet.${name}`);
      },
    });
    assertClose(out, refTensor(REF, 'unet_controlnet.sample'), 1e-5, 'unet_controlnet.sample');
  });
  assert.deepEqual(traced, ['time_proj', 'time_embedding', 'conv_in', 'down_blocks.0', 'down_blocks.1', 'mid_block',
    'up_blocks.0', 'up_blocks.1', 'conv_norm_out']);
});

test('float64: unet.sample and unet_controlnet.sample within 1e-10 (float32 timestep sinusoid, as diffusers)', { skip }, () => {
  const model = fixtureUNet().to('float64');
  const x = refInputs('float64');
  const res = refResiduals(REF64);
  torch.scope(() => {
    const plain = model.forward(x.latent, x.timesteps, x.context);
    assert.equal(plain.dtype, 'float64');
    assertClose(plain, refTensor(REF64, 'unet.sample'), 1e-10, 'f64 unet.sample');
    const withRes = model.forward(x.latent, x.timesteps, x.context, { downBlockAdditionalResiduals: res.down, midBlockAdditionalResidual: res.mid });
    assertClose(withRes, refTensor(REF64, 'unet_controlnet.sample'), 1e-10, 'f64 unet_controlnet.sample');
  });
});

test('timesteps: a number or one-element tensor is used for every batch element; bad shapes are named', { skip }, () => {
  const x = refInputs('float32');
  torch.scope(() => {
    const both = torch.tensor([421, 421], { dtype: 'int64' });
    const ref = unet().forward(x.latent, both, x.context);
    assert.ok(unet().forward(x.latent, 421, x.context).equal(ref));
    assert.ok(unet().forward(x.latent, torch.tensor([421], { dtype: 'int64' }), x.context).equal(ref));
    assert.throws(() => unet().forward(x.latent, torch.tensor([1, 2, 3]), x.context), /timesteps: expected a number or 2 values/);
    assert.throws(() => unet().forward(x.latent, 1, x.context.slice(2, 0, 16)), /encoder_hidden_states must be \[2, tokens, 32\], got \[2, 8, 16\]/);
    assert.throws(() => unet().forward(x.cond, 1, x.context), /sample must be \[B, 4, H, W\], got \[2, 3, 128, 128\]/);
    assert.throws(() => unet().forward(x.latent, 1, x.context, { downBlockAdditionalResiduals: [x.latent] }),
      /1 down block residuals given, the down path has 4 skip states/);
  });
});

test('a latent size that is not a multiple of the upsampling factor upsamples to the skip sizes (diffusers upsample_size)', { skip }, () => {
  torch.scope(() => {
    const x = refInputs('float32');
    const odd = x.latent.slice(2, 0, 15).slice(3, 0, 13).contiguous();
    const out = unet().forward(odd, x.timesteps, x.context);
    assert.deepEqual(out.shape, [2, 4, 15, 13]);
    assert.ok(out.isfinite().all().item());
  });
});

test('forward frees its intermediates: the live tensor count is the same after each call', { skip }, () => {
  const x = refInputs('float32');
  const res = refResiduals(REF);
  const step = (): void => torch.scope(() => {
    unet().forward(x.latent, x.timesteps, x.context, { downBlockAdditionalResiduals: res.down, midBlockAdditionalResidual: res.mid });
  });
  step();
  const before = torch.liveTensorCount();
  for (let i = 0; i < 3; i++) step();
  assert.equal(torch.liveTensorCount(), before);
});

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

function tinyConfig(): UNetConfig {
  return unet().config as UNetConfig;
}

function sameOutput(a: UNet2DConditionModel, b: UNet2DConditionModel): void {
  const x = refInputs('float32');
  torch.scope(() => assert.ok(a.forward(x.latent, x.timesteps, x.context).equal(b.forward(x.latent, x.timesteps, x.context))));
}

test('loadUNet: a diffusers folder (also a pipeline folder with unet/), config.json read, weights loaded strictly', { skip }, () => {
  const dir = path.join(tmp, 'pipeline', 'unet');
  saveDiffusersModel(unet(), dir);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))._class_name, 'UNet2DConditionModel');
  const viaPipeline = loadUNet(path.join(tmp, 'pipeline'));
  assert.deepEqual(viaPipeline.config, tinyConfig());
  sameOutput(viaPipeline, unet());
  sameOutput(loadUNet(path.join(dir, 'diffusion_pytorch_model.safetensors')), unet()); // config.json beside the file
  assert.equal(loadUNet(dir, { dtype: 'float64' }).dtype, 'float64');
  // A missing tensor is named.
  const partial = new Map(unet().stateDict());
  partial.delete('mid_block.resnets.1.conv2.bias');
  const broken = path.join(tmp, 'broken');
  fs.mkdirSync(broken);
  fs.copyFileSync(path.join(dir, 'config.json'), path.join(broken, 'config.json'));
  torch.saveSafetensors(path.join(broken, 'diffusion_pytorch_model.safetensors'), partial);
  assert.throws(() => loadUNet(broken), /missing keys \(1\): mid_block\.resnets\.1\.conv2\.bias/);
  assert.throws(() => loadUNet(path.join(tmp, 'nowhere')), /no such unet file or folder/);
});

test('loadUNet: a full ldm checkpoint (model.diffusion_model.*, other models ignored) and a bare ldm UNet load the same weights', { skip }, () => {
  const full = new Map<string, Tensor>();
  for (const [k, t] of unet().stateDict()) full.set(`model.diffusion_model.${unetKeyToLdm(k, tinyConfig())}`, t);
  full.set('first_stage_model.decoder.conv_in.weight', torch.zeros([2, 2]));
  full.set('cond_stage_model.transformer.text_model.final_layer_norm.weight', torch.zeros([2]));
  const file = path.join(tmp, 'sd-full.safetensors');
  torch.saveSafetensors(file, full);
  const warnings: string[] = [];
  sameOutput(loadUNet(file, { config: tinyConfig(), onWarning: (w) => warnings.push(w) }), unet());
  assert.match(warnings.join('\n'), /using its 208 model\.diffusion_model\.\* tensors, ignoring 2 others/);
  const bare = new Map([...full].filter(([k]) => k.startsWith('model.diffusion_model.')).map(([k, t]) => [k.slice(22), t]));
  const bareFile = path.join(tmp, 'unet-ldm.safetensors');
  torch.saveSafetensors(bareFile, bare);
  sameOutput(loadUNet(bareFile, { config: tinyConfig() }), unet());
  // Without a config, an ldm file is read as SD1.5: the tiny one's shapes then mismatch, by name.
  assert.throws(() => loadUNet(bareFile), /ldm layout, renamed to diffusers' keys[\s\S]*shape mismatch for conv_in\.weight/);
  const other = path.join(tmp, 'other.safetensors');
  torch.saveSafetensors(other, { 'encoder.conv_in.weight': torch.zeros([1]) });
  assert.throws(() => loadUNet(other), /not UNet2DConditionModel weights/);
});

test('SD2-style options: linear projections, per-block heads, two transformer layers, upcast attention', { skip }, () => {
  const model = new UNet2DConditionModel({
    ...tinyConfig(), useLinearProjection: true, attentionHeadDim: [2, 4], transformerLayersPerBlock: 2, upcastAttention: true,
  });
  const sd = model.stateDict();
  assert.deepEqual(sd.get('down_blocks.0.attentions.0.proj_in.weight')!.shape, [32, 32]);
  assert.ok(sd.has('up_blocks.1.attentions.1.transformer_blocks.1.ff.net.2.bias'));
  assert.equal((model.down_blocks.at(0).attentions!.at(0).transformer_blocks.at(0).attn1).heads, 2);
  assert.equal((model.mid_block.attentions.at(0).transformer_blocks.at(0).attn2).heads, 4);
  // Every key has an ldm name, and they are distinct.
  const ldm = [...sd.keys()].map((k) => unetKeyToLdm(k, model.config));
  assert.equal(new Set(ldm).size, ldm.length);
  const x = refInputs('float32');
  torch.scope(() => assert.deepEqual(model.forward(x.latent, x.timesteps, x.context).shape, [2, 4, 16, 16]));
});

test('nn.init.skipInit: modules built inside draw nothing from the RNG; drawing resumes after, even after a throw', () => {
  torch.scope(() => {
    torch.manualSeed(3);
    const ref = torch.rand([4]);
    torch.manualSeed(3);
    torch.nn.init.skipInit(() => new torch.nn.Linear(8, 8));
    assert.ok(torch.rand([4]).equal(ref));
    assert.throws(() => torch.nn.init.skipInit(() => {
      throw new Error('build failed');
    }), /build failed/);
    torch.manualSeed(3);
    new torch.nn.Linear(8, 8);
    assert.ok(!torch.rand([4]).equal(ref));
  });
});
