// The text-to-image / ControlNet sampling loop on the fixture's tiny models (CLIP, UNet,
// ControlNet with formula weights; a tiny random VAE): shapes, determinism per seed, a from_unet
// ControlNet (zero residuals) reproducing the plain pipeline bit for bit, and memory.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as torch from '../src/torch';
import { Generator, Tensor } from '../src/torch';
import { disposeAll, sdFormulaWeights, sdModelConfig } from './helpers/sd-formula-weights';
import { fixtureControlNet, fixtureUNet, refInputs, skipUnlessSdRef } from './helpers/sd-unet-ref';
import { ClipTextModel } from '../src/models/sd/clip-text';
import { clipTextConfigFromTransformers } from '../src/models/sd/clip-text-io';
import { ClipTokenizer } from '../src/models/sd/clip-tokenizer';
import { ControlNetModel } from '../src/models/sd/controlnet';
import { generate, GenerateOptions, loadStableDiffusion, StableDiffusionParts } from '../src/models/sd/pipeline';
import { saveDiffusersModel } from '../src/models/sd/unet-io';
import { DdimScheduler, DdpmScheduler, PndmScheduler, SD15_SCHEDULER_JSON } from '../src/diffusion/schedulers';
import { AutoencoderKL } from '../src/models/vae';

const skip = skipUnlessSdRef('SD pipeline tests');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-sd-pipeline-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Letters a..z are whole-word tokens 10..35 of the fixture's vocabulary; BOS 998, EOS 999; 8 tokens. */
function tinyTokenizer(): ClipTokenizer {
  const vocab = new Map<string, number>([['<|startoftext|>', 998], ['<|endoftext|>', 999]]);
  'abcdefghijklmnopqrstuvwxyz'.split('').forEach((c, i) => vocab.set(`${c}</w>`, 10 + i));
  return new ClipTokenizer({ vocab, merges: [], modelMaxLength: 8 });
}

let parts: StableDiffusionParts | undefined;
function tinyParts(): StableDiffusionParts {
  if (!parts) {
    const weights = sdFormulaWeights('clip_text');
    const textEncoder = new ClipTextModel(clipTextConfigFromTransformers(sdModelConfig('clip_text'), 'weights-manifest.json clip_text.config'));
    textEncoder.loadStateDict(weights);
    disposeAll(weights);
    parts = { unet: fixtureUNet(), textEncoder, tokenizer: tinyTokenizer(), scheduler: DdimScheduler.fromConfig(SD15_SCHEDULER_JSON) };
  }
  return parts;
}

/** 128x128 pixels = the fixture's 16x16 latents (and its ControlNet's 128x128 condition). */
const base: GenerateOptions = { prompts: ['a b c', 'x y'], steps: 2, guidanceScale: 7.5, height: 128, width: 128 };

function run(extra: Partial<StableDiffusionParts>, o: Partial<GenerateOptions> = {}, seed = 5): Tensor {
  return generate({ ...tinyParts(), ...extra }, { ...base, generator: new Generator().manualSeed(seed), ...o }).latents;
}

test('generate: latents of the requested size, the same for the same seed, different for another', { skip }, () => {
  torch.scope(() => {
    const a = run({});
    assert.deepEqual(a.shape, [2, 4, 16, 16]);
    assert.ok(a.isfinite().all().item());
    assert.ok(run({}).equal(a));
    assert.ok(!run({}, {}, 6).equal(a));
    // Guidance matters: scale 1 (one pass, no negative prompt) gives other latents.
    assert.ok(!run({}, { guidanceScale: 1 }).equal(a));
    assert.deepEqual(run({}, { imagesPerPrompt: 2, guidanceScale: 1 }).shape, [4, 4, 16, 16]);
    // The initial noise is randn(shape) from the generator, as diffusers' prepare_latents.
    const noise = torch.randn([2, 4, 16, 16], { generator: new Generator().manualSeed(5) });
    assert.ok(run({}, { latents: noise }, 99).equal(a));
  });
});

test('generate: every scheduler runs its timesteps; PLMS history is released', { skip }, () => {
  torch.scope(() => {
    const seen: number[] = [];
    run({ scheduler: DdpmScheduler.fromConfig(SD15_SCHEDULER_JSON) }, { onStep: (_i, t) => seen.push(t) });
    assert.deepEqual(seen, [501, 1]);
    const pndm = PndmScheduler.fromConfig(SD15_SCHEDULER_JSON);
    const out = run({ scheduler: pndm }, { steps: 3 });
    assert.ok(out.isfinite().all().item());
    assert.equal(pndm.historyLength, 0);
  });
});

test('generate with a from_unet ControlNet (zero residuals) equals the plain pipeline bit for bit; a trained one changes it', { skip }, () => {
  const image = refInputs('float32').cond;
  torch.scope(() => {
    const plain = run({});
    const zero = ControlNetModel.fromUNet(tinyParts().unet);
    assert.ok(run({ controlnet: zero }, { image }).equal(plain));
    assert.ok(run({ controlnet: zero }, { image, guessMode: true }).equal(plain));
    const cn = fixtureControlNet();
    const steered = run({ controlnet: cn }, { image });
    assert.ok(!steered.equal(plain));
    assert.ok(run({ controlnet: cn }, { image: image.slice(0, 0, 1) }).isfinite().all().item()); // one image for both prompts
    // conditioning scale 0: residuals times 0 are zeros, so the plain UNet's output again.
    assert.ok(run({ controlnet: cn }, { image, controlnetConditioningScale: 0 }).equal(plain));
    assert.ok(!run({ controlnet: cn }, { image, guessMode: true }).equal(steered));
  });
});

test('generate decodes with a VAE to images in [0, 1]', { skip }, () => {
  const vae = new AutoencoderKL({ blockOutChannels: [8, 8, 8, 8], normNumGroups: 4, layersPerBlock: 1 });
  torch.scope(() => {
    const out = generate({ ...tinyParts(), vae }, { ...base, steps: 2, generator: new Generator().manualSeed(1) });
    assert.deepEqual(out.latents.shape, [2, 4, 16, 16]);
    assert.deepEqual(out.images!.shape, [2, 3, 128, 128]);
    assert.ok(out.images!.min().item() >= 0 && out.images!.max().item() <= 1);
  });
});

test('generate: bad arguments are named; live tensors do not grow across calls', { skip }, () => {
  const image = refInputs('float32').cond;
  assert.throws(() => run({}, { image }), /image given without a ControlNet/);
  assert.throws(() => run({ controlnet: fixtureControlNet() }), /a ControlNet needs its condition image/);
  assert.throws(() => run({}, { height: 100 }), /height and width must be multiples of 8, got 100x128/);
  assert.throws(() => run({ controlnet: fixtureControlNet() }, { image: image.slice(1, 0, 1) }), /controlnet_cond must be \[4, 3, H, W\]/);
  const cn = fixtureControlNet();
  const once = (): void => torch.scope(() => {
    run({ controlnet: cn }, { image });
  });
  once();
  const before = torch.liveTensorCount();
  once();
  once();
  assert.equal(torch.liveTensorCount(), before);
});

test('loadStableDiffusion reads a diffusers pipeline folder; it samples exactly as the parts in memory', { skip }, () => {
  const p = tinyParts();
  const dir = path.join(tmp, 'tiny-sd');
  saveDiffusersModel(p.unet, path.join(dir, 'unet'));
  saveDiffusersModel(fixtureControlNet(), path.join(tmp, 'tiny-controlnet'));
  fs.mkdirSync(path.join(dir, 'text_encoder'));
  fs.writeFileSync(path.join(dir, 'text_encoder', 'config.json'), JSON.stringify({ ...sdModelConfig('clip_text'), model_type: 'clip_text_model' }));
  torch.saveSafetensors(path.join(dir, 'text_encoder', 'model.safetensors'), p.textEncoder.stateDict());
  fs.mkdirSync(path.join(dir, 'tokenizer'));
  fs.writeFileSync(path.join(dir, 'tokenizer', 'vocab.json'), JSON.stringify(Object.fromEntries(p.tokenizer.vocab)));
  fs.writeFileSync(path.join(dir, 'tokenizer', 'merges.txt'), '#version: 0.2\n');
  fs.writeFileSync(path.join(dir, 'tokenizer', 'tokenizer_config.json'), JSON.stringify({ model_max_length: 8 }));
  fs.mkdirSync(path.join(dir, 'scheduler'));
  fs.writeFileSync(path.join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(SD15_SCHEDULER_JSON));
  const loaded = loadStableDiffusion(dir, { scheduler: 'ddim', controlnet: path.join(tmp, 'tiny-controlnet') });
  assert.equal(loaded.vae, undefined);
  assert.ok(loadStableDiffusion(dir).scheduler instanceof PndmScheduler); // the file's class
  const image = refInputs('float32').cond;
  torch.scope(() => {
    const opts = { ...base, image, generator: new Generator().manualSeed(8) };
    const fromFiles = generate(loaded, opts).latents;
    const inMemory = generate({ ...p, controlnet: fixtureControlNet() }, { ...opts, generator: new Generator().manualSeed(8) }).latents;
    assert.ok(fromFiles.equal(inMemory));
  });
  assert.throws(() => loadStableDiffusion(path.join(tmp, 'absent')), /no such Stable Diffusion pipeline folder/);
});
