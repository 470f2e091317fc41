// The CLIP text encoder (transformers' CLIPTextModel) against golden outputs of the reference code
// (shared/fixtures/sd-controlnet-ref: weights regenerated from the manifest's formula; float32
// within 1e-5 rel max, float64 within 1e-10), SD1.5's real key list and its ldm layout, the
// loaders on small files written here, and the classifier-free guidance helpers.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { get, loadFixture, relErr } from './helpers/dit-ref';
import { disposeAll, readSdJson, SD_FIXTURES, sdFormulaWeights, sdModelConfig, skipUnlessSdFixtures } from './helpers/sd-formula-weights';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { ClipTextModel, SD15_CLIP_TEXT_CONFIG } from '../src/models/sd/clip-text';
import { clipTextConfigFromTransformers, loadClipTextModel, toClipTextStateDict } from '../src/models/sd/clip-text-io';
import { ClipTokenizer } from '../src/models/sd/clip-tokenizer';
import { combineGuidance, encodeText, guidanceBatch, guidedPrediction, promptEmbeds } from '../src/models/sd/guidance';

const skip = skipUnlessSdFixtures(['weights-manifest.json', 'sd-controlnet-ref.safetensors', 'sd-controlnet-ref-f64.safetensors',
  'sd-controlnet-debug.safetensors', 'sd15-clip-text-keys.json', 'sd15-ldm-key-map.json'], 'SD CLIP fixture tests');
const TOL32 = 1e-5;
const TOL64 = 1e-10;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-clip-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const files = new Map<string, Map<string, Tensor>>();
const fx = (file: string, key: string): Tensor => {
  if (!files.has(file)) files.set(file, loadFixture(SD_FIXTURES, file));
  return get(files.get(file)!, key);
};
const ref = (key: string): Tensor => fx('sd-controlnet-ref.safetensors', key);

let weights: Map<string, Tensor> | undefined;
let model: ClipTextModel | undefined;
/** The fixture's tiny CLIPTextModel: config from the manifest, formula weights loaded strictly. */
function fixtureModel(): ClipTextModel {
  if (!model) {
    weights = sdFormulaWeights('clip_text');
    model = new ClipTextModel(clipTextConfigFromTransformers(sdModelConfig('clip_text'), 'weights-manifest.json clip_text.config'));
    model.loadStateDict(weights, { what: 'sd-controlnet-ref clip_text formula weights' });
  }
  return model;
}

const maxErrors: Record<string, number> = {};
function close(got: Tensor, want: Tensor, name: string, tol: number): void {
  const e = relErr(got, want);
  maxErrors[name] = e;
  assert.ok(e <= tol, `${name}: rel max err ${e} > ${tol}`);
}

test('formula weights: 36 tensors / 48106 values in the manifest\'s state_dict order', { skip }, () => {
  const m = fixtureModel();
  const keys = [...m.stateDict().keys()];
  assert.deepEqual(keys, [...weights!.keys()]);
  assert.equal(keys.length, 36);
  assert.equal(m.numParameters(), 48106);
});

test('float32: last_hidden_state, pooler_output and every debug intermediate match transformers (SD call, no mask)', { skip }, () => {
  torch.scope(() => {
    const m = fixtureModel();
    const o = torch.noGrad(() => m.forward(ref('input.input_ids'), { outputHiddenStates: true }));
    close(o.lastHiddenState, ref('clip.last_hidden_state'), 'clip.last_hidden_state', TOL32);
    close(o.poolerOutput, ref('clip.pooler_output'), 'clip.pooler_output', TOL32);
    // The UNet/ControlNet calls got exactly this tensor.
    close(o.lastHiddenState, ref('input.encoder_hidden_states'), 'input.encoder_hidden_states', TOL32);
    const debug = (k: string): Tensor => fx('sd-controlnet-debug.safetensors', `debug.clip/clip.text_model.${k}`);
    assert.equal(o.hiddenStates!.length, 3);
    close(o.hiddenStates![0], debug('embeddings'), 'debug embeddings', TOL32);
    close(o.hiddenStates![1], debug('encoder.layers.0'), 'debug encoder.layers.0', TOL32);
    close(o.hiddenStates![2], debug('encoder.layers.1'), 'debug encoder.layers.1', TOL32);
    close(o.lastHiddenState, debug('final_layer_norm'), 'debug final_layer_norm', TOL32);
  });
});

test('float32 with attention_mask (padding keys masked on top of the causal mask) matches clip_masked.*', { skip }, () => {
  torch.scope(() => {
    const o = torch.noGrad(() => fixtureModel().forward(ref('input.input_ids'), { attentionMask: ref('input.attention_mask') }));
    close(o.lastHiddenState, ref('clip_masked.last_hidden_state'), 'clip_masked.last_hidden_state', TOL32);
    close(o.poolerOutput, ref('clip_masked.pooler_output'), 'clip_masked.pooler_output', TOL32);
  });
});

test('float64 (float32 weights cast) matches the f64 goldens within 1e-10', { skip }, () => {
  const m64 = new ClipTextModel(fixtureModel().config);
  m64.loadStateDict(weights!);
  m64.to('float64');
  torch.scope(() => {
    const f64 = (k: string): Tensor => fx('sd-controlnet-ref-f64.safetensors', k);
    const o = torch.noGrad(() => m64.forward(ref('input.input_ids')));
    assert.equal(o.lastHiddenState.dtype, 'float64');
    close(o.lastHiddenState, f64('clip.last_hidden_state'), 'f64 clip.last_hidden_state', TOL64);
    close(o.poolerOutput, f64('clip.pooler_output'), 'f64 clip.pooler_output', TOL64);
    const om = torch.noGrad(() => m64.forward(ref('input.input_ids'), { attentionMask: ref('input.attention_mask') }));
    close(om.lastHiddenState, f64('clip_masked.last_hidden_state'), 'f64 clip_masked.last_hidden_state', TOL64);
    close(om.poolerOutput, f64('clip_masked.pooler_output'), 'f64 clip_masked.pooler_output', TOL64);
  });
});

test('the comparison sees the README\'s mistake: exact GELU instead of quick_gelu moves the output far beyond 1e-5', { skip }, () => {
  const wrong = new ClipTextModel({ ...fixtureModel().config, hiddenAct: 'gelu' });
  wrong.loadStateDict(weights!);
  torch.scope(() => {
    const e = relErr(torch.noGrad(() => wrong.forward(ref('input.input_ids')).lastHiddenState), ref('clip.last_hidden_state'));
    assert.ok(e > 1e-3, `exact GELU moved the output by only ${e}`);
  });
});

test('pooled output: first EOS for eos_token_id 999; argmax of the ids for SD\'s legacy eos_token_id 2', { skip }, () => {
  torch.scope(() => {
    const m = fixtureModel();
    const ids = torch.tensor([[998, 5, 999, 7, 999], [998, 999, 3, 3, 3]], { dtype: 'int64' });
    assert.deepEqual(m.text_model.eosPositions(ids).toArray(), [2, 1]);
    const legacy = new ClipTextModel({ ...m.config, eosTokenId: 2 });
    // Highest id first: row 1 has 999 at 1; for tokenizer output that is the EOS too.
    assert.deepEqual(legacy.text_model.eosPositions(ids).toArray(), [2, 1]);
    assert.deepEqual(legacy.text_model.eosPositions(torch.tensor([[998, 5, 6, 2, 2]], { dtype: 'int64' })).toArray(), [0]);
  });
});

test('a forward loop keeps the live tensor count constant', { skip }, () => {
  const m = fixtureModel();
  const counts: number[] = [];
  for (let i = 0; i < 4; i++) {
    torch.scope(() => {
      torch.noGrad(() => m.forward(ref('input.input_ids'), { attentionMask: ref('input.attention_mask') }));
    });
    counts.push(torch.liveTensorCount());
  }
  assert.ok(counts.every((c) => c === counts[0]), `live tensors: ${counts.join(', ')}`);
});

// ---------------------------------------------------------------------------------------------
// Real SD1.5 keys and the ldm layout
// ---------------------------------------------------------------------------------------------

interface KeyList { config: Record<string, unknown>; keys: { key: string; shape: number[] }[]; num_params: number }

test('SD1.5\'s text encoder config builds exactly the real CLIPTextModel key list and shapes, and an ldm-layout state dict loads into it', { skip }, () => {
  const real = readSdJson<KeyList>('sd15-clip-text-keys.json');
  const map = readSdJson<{ clip_text: { ldm_prefix_in_full_checkpoints: string } }>('sd15-ldm-key-map.json').clip_text;
  const config = clipTextConfigFromTransformers(real.config, 'sd15-clip-text-keys.json config');
  assert.deepEqual(config, SD15_CLIP_TEXT_CONFIG);
  // 123M values: built without drawing random weights (they are not looked at).
  const m = torch.nn.init.skipInit(() => new ClipTextModel(config));
  const sd = m.stateDict();
  assert.deepEqual([...sd.keys()], real.keys.map((k) => k.key), 'keys and their order');
  for (const { key, shape } of real.keys) assert.deepEqual(sd.get(key)!.shape, shape, key);
  assert.equal(m.numParameters(), real.num_params);
  // A full ldm checkpoint: every key behind the map's prefix, the old position_ids buffer and other models' tensors beside it.
  const ldm = new Map<string, Tensor>();
  const marker = torch.full([768], 0.25).keep();
  for (const [k, t] of sd) ldm.set(map.ldm_prefix_in_full_checkpoints + k, k === 'text_model.final_layer_norm.bias' ? marker : t.detach().keep());
  ldm.set(`${map.ldm_prefix_in_full_checkpoints}text_model.embeddings.position_ids`, torch.arange(0, 77).reshape(1, 77).keep());
  ldm.set('model.diffusion_model.out.2.bias', torch.zeros([4]).keep());
  const converted = toClipTextStateDict(ldm, 'sd15.ckpt');
  assert.equal(converted.layout, 'ldm');
  assert.deepEqual([...converted.stateDict.keys()].sort(), [...sd.keys()].sort());
  m.loadStateDict(converted.stateDict, { what: 'sd15 ldm layout' });
  assert.ok(m.text_model.final_layer_norm.bias!.equal(marker), 'the renamed tensor landed in its parameter');
  disposeAll(converted.stateDict);
  marker.dispose();
});

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/** transformers' config.json for the fixture's tiny model. */
function writeConfig(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ architectures: ['CLIPTextModel'], model_type: 'clip_text_model', ...sdModelConfig('clip_text') }));
}

test('loads a transformers folder (text_encoder/ of a pipeline) and an ldm full checkpoint; outputs equal the fixture', { skip }, () => {
  const pipeline = path.join(tmp, 'pipeline');
  writeConfig(path.join(pipeline, 'text_encoder'));
  torch.saveSafetensors(path.join(pipeline, 'text_encoder', 'model.safetensors'), fixtureModel().stateDict());
  const fromFolder = loadClipTextModel(pipeline);
  const ldmFile = path.join(tmp, 'sd-full.safetensors');
  const full = new Map<string, Tensor>();
  for (const [k, t] of fixtureModel().stateDict()) full.set(`cond_stage_model.transformer.${k}`, t);
  full.set('cond_stage_model.transformer.text_model.embeddings.position_ids', torch.arange(0, 77).reshape(1, 77));
  full.set('first_stage_model.decoder.conv_out.bias', torch.zeros([3]));
  torch.saveSafetensors(ldmFile, full);
  const warnings: string[] = [];
  const fromLdm = loadClipTextModel(ldmFile, { configFile: path.join(pipeline, 'text_encoder', 'config.json'), onWarning: (w) => warnings.push(w) });
  assert.ok(warnings.some((w) => /using its 37 cond_stage_model\.transformer\.\* tensors, ignoring 1 others/.test(w)), warnings.join('\n'));
  torch.scope(() => {
    for (const m of [fromFolder, fromLdm]) {
      const o = torch.noGrad(() => m.forward(ref('input.input_ids')));
      close(o.lastHiddenState, ref('clip.last_hidden_state'), 'loaded clip.last_hidden_state', TOL32);
    }
  });
});

test('bad files and configs give errors naming the file and field', { skip }, () => {
  assert.throws(() => clipTextConfigFromTransformers({ hidden_size: 'big' }, 'cfg.json'), /cfg\.json: 'hidden_size' must be a number/);
  assert.throws(() => clipTextConfigFromTransformers({ hidden_act: 'relu' }, 'cfg.json'), /'hidden_act' "relu" is not supported/);
  assert.throws(() => clipTextConfigFromTransformers({ model_type: 'clip_vision_model' }, 'cfg.json'), /expected "clip_text_model"/);
  // A CLIPModel config: its text_config is used.
  assert.equal(clipTextConfigFromTransformers({ model_type: 'clip', text_config: { hidden_size: 64 } }, 'c').hiddenSize, 64);
  const dir = path.join(tmp, 'broken');
  writeConfig(dir);
  const sd = new Map(fixtureModel().stateDict());
  sd.delete('text_model.final_layer_norm.bias');
  torch.saveSafetensors(path.join(dir, 'model.safetensors'), sd);
  assert.throws(() => loadClipTextModel(dir), /model\.safetensors[\s\S]*missing keys \(1\): text_model\.final_layer_norm\.bias/);
  const noConfig = path.join(tmp, 'noconfig');
  fs.mkdirSync(noConfig);
  torch.saveSafetensors(path.join(noConfig, 'weights.safetensors'), fixtureModel().stateDict());
  assert.throws(() => loadClipTextModel(noConfig), /no config\.json, and the weights are not SD 1\.x's CLIP ViT-L\/14 text encoder/);
  assert.throws(() => loadClipTextModel(path.join(tmp, 'absent')), /no such CLIP text encoder file or folder/);
});

// ---------------------------------------------------------------------------------------------
// Classifier-free guidance
// ---------------------------------------------------------------------------------------------

/** A tokenizer over the fixture's ids: letters a..z are tokens 10..35 (as whole words), BOS 998, EOS 999. */
function tinyTokenizer(): ClipTokenizer {
  const vocab = new Map<string, number>([['<|startoftext|>', 998], ['<|endoftext|>', 999]]);
  'abcdefghijklmnopqrstuvwxyz'.split('').forEach((c, i) => vocab.set(`${c}</w>`, 10 + i));
  return new ClipTokenizer({ vocab, merges: [], modelMaxLength: 8 });
}

test('guidance: uncond + s * (cond - uncond) on the [uncond; cond] halves', () => {
  torch.scope(() => {
    const pred = torch.tensor([[1, 2], [3, 5], [2, 2], [7, 1]]);
    const out = combineGuidance(pred, 7.5);
    // rows 0,1 unconditional; rows 2,3 conditional.
    assert.deepEqual(out.tolist(), [[1 + 7.5 * (2 - 1), 2 + 7.5 * (2 - 2)], [3 + 7.5 * (7 - 3), 5 + 7.5 * (1 - 5)]]);
    assert.deepEqual(guidanceBatch(torch.tensor([[1], [2]])).tolist(), [[1], [2], [1], [2]]);
    assert.throws(() => combineGuidance(torch.zeros([3, 2]), 2), /batch of 3 is odd/);
  });
});

test('guidance: the model sees duplicated latents with [negative; prompt] embeddings; scale 1 means one pass', { skip }, () => {
  const tok = tinyTokenizer();
  const m = fixtureModel();
  torch.scope(() => {
    const embeds = promptEmbeds(m, tok, ['a b c', 'd'], { guidanceScale: 7.5 });
    assert.deepEqual(embeds.shape, [4, 8, 32]);
    const direct = (texts: string[]): Tensor => torch.noGrad(() => m.forward(tok.call(texts).inputIds).lastHiddenState);
    assert.ok(embeds.slice(0, 0, 2).equal(direct(['', ''])), 'negative rows first, the empty prompt by default');
    assert.ok(embeds.slice(0, 2, 4).equal(direct(['a b c', 'd'])), 'then the prompts');
    // The empty prompt's ids are the fixture's row 0 (BOS, then EOS padding), so its embedding is the golden one.
    close(embeds.slice(0, 0, 1), ref('clip.last_hidden_state').slice(0, 0, 1), 'empty-prompt embedding', TOL32);
    const negative = promptEmbeds(m, tok, ['a b c', 'd'], { guidanceScale: 2, negativePrompts: 'z' });
    assert.ok(negative.slice(0, 0, 2).equal(direct(['z', 'z'])));
    assert.deepEqual(promptEmbeds(m, tok, ['a b c'], { guidanceScale: 1 }).shape, [1, 8, 32]);
    assert.deepEqual(promptEmbeds(m, tok, ['a b c', 'd'], { guidanceScale: 3, imagesPerPrompt: 2 }).shape, [8, 8, 32]);
    // clip_skip: 0 is the last layer (through final_layer_norm, as without it); 1 the layer before.
    assert.ok(encodeText(m, tok, ['a b c'], 0).equal(direct(['a b c'])));
    const hidden = torch.noGrad(() => m.forward(tok.call(['a b c']).inputIds, { outputHiddenStates: true }).hiddenStates!);
    assert.ok(encodeText(m, tok, ['a b c'], 1).equal(torch.noGrad(() => m.text_model.final_layer_norm.forward(hidden[1]))));
    assert.throws(() => encodeText(m, tok, ['a'], 2), /clipSkip must be an integer in 0\.\.1/);

    const latents = torch.tensor([[1.0], [2.0]]);
    const calls: { x: number[][]; t: number[]; rows: number }[] = [];
    // A stand-in model: eps = x * (1 + mean of its embedding row), so each half is distinguishable.
    const fake = (x: Tensor, t: Tensor, e: Tensor): Tensor => {
      calls.push({ x: x.tolist() as number[][], t: t.toArray(), rows: e.shape[0] });
      return x.mul(e.mean([1, 2]).add(1).unsqueeze(1));
    };
    const guided = guidedPrediction(fake, latents, 981, embeds, 7.5);
    assert.deepEqual(calls[0], { x: [[1], [2], [1], [2]], t: [981, 981, 981, 981], rows: 4 });
    const k = embeds.mean([1, 2]).add(1).toArray();
    const want = [1, 2].map((x, i) => x * k[i] + 7.5 * (x * k[i + 2] - x * k[i]));
    guided.toArray().forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-5, `row ${i}: ${v} vs ${want[i]}`));
    assert.throws(() => guidedPrediction(fake, latents, 981, embeds.slice(0, 0, 2), 7.5), /2 embedding rows for a model batch of 4/);
  });
});

test('report: max CLIP errors vs the fixture', { skip }, () => {
  console.log(`# CLIP rel max errors: ${JSON.stringify(maxErrors)}`);
});
