// Latent caches (difftune datasets encode) and the latent workflow on a tiny random VAE: the cache
// holds exactly what the VAE gives for each image and its flip, survives an interrupted encode,
// names a corrupted shard; a latent DiT fine-tunes from it with Diff-Tuning and a latent bank
// through the real trainer; `sample --vae` decodes its samples into the PNG grid.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { runSample } from '../src/cli/sample';
import { encodeLatentCache, LatentCacheDataset, readLatentManifest } from '../src/data/latent-cache';
import { decodeLatentImages } from '../src/data/latent-images';
import { sha256File } from '../src/data/hash';
import { scanImageFolder } from '../src/data/image-folder';
import { decodeImageFiles } from '../src/eval/reference-stats';
import { DiT } from '../src/models/dit';
import { saveDiT } from '../src/models/dit-io';
import { AutoencoderKL } from '../src/models/vae';
import { loadVae } from '../src/models/vae-io';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { buildBank, imagesToUint8, writeDecodedBank, bankDecodedPath } from '../src/tuning/bank';
import { resolveConfig } from '../src/tuning/config';
import { prepareInputs } from '../src/tuning/setup';
import { Trainer } from '../src/tuning/trainer';
import { encodePng } from '../src/report/png';
import { probeLoss } from './helpers/probe-loss';
import { tempDir, writeTargetFolder, SIZE } from './helpers/train-fixture';

const root = tempDir('latent');
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** A tiny random AutoencoderKL (2 levels: 8x8 images -> 4x4x4 latents) saved as a diffusers folder. */
function writeTinyVae(dir: string): AutoencoderKL {
  torch.manualSeed(7);
  const vae = new AutoencoderKL({ blockOutChannels: [32, 32], layersPerBlock: 1, latentChannels: 4, normNumGroups: 32 });
  fs.mkdirSync(dir, { recursive: true });
  torch.saveSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), vae.stateDict());
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    _class_name: 'AutoencoderKL', in_channels: 3, out_channels: 3, block_out_channels: [32, 32], layers_per_block: 1,
    latent_channels: 4, norm_num_groups: 32, sample_size: SIZE, scaling_factor: 0.18215,
  }));
  return vae;
}

const vaeDir = path.join(root, 'vae');
const images = path.join(root, 'images');
const vae = writeTinyVae(vaeDir);
writeTargetFolder(images, 16);
// The helper's shapes are left-right symmetric; two horizontal ramps make the flips differ.
fs.mkdirSync(path.join(images, 'ramp'));
for (let k = 0; k < 2; k++) {
  const px = new Uint8Array(SIZE * SIZE * 3).map((_, i) => Math.floor(i / 3) % SIZE * 30 + k * 20);
  fs.writeFileSync(path.join(images, 'ramp', `${k}.png`), encodePng(px, SIZE, SIZE, 3));
}
const N = 34;
const cache = path.join(root, 'cache');
const base = { vae: vaeDir, input: images, resolution: SIZE, batchSize: 4, shardSize: 10 };
let encoded: Promise<unknown> | null = null;
const encodeOnce = (): Promise<unknown> => (encoded ??= encodeLatentCache({ ...base, out: cache }));

function maxDiff(a: Tensor, b: Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item());
}

test('the cache holds the VAE posterior of every image and its flip, in model space; decoding gives the VAE reconstruction', async () => {
  await encodeOnce();
  const m = readLatentManifest(cache);
  assert.equal(m.count, N);
  assert.equal(m.complete, true);
  assert.deepEqual(m.shards.map((s) => s.count), [10, 10, 10, 4]);
  assert.deepEqual(m.latentShape, [4, SIZE / 2, SIZE / 2]);
  assert.deepEqual(m.classes, ['cross', 'ramp', 'square']);
  assert.deepEqual(m.classCounts, [16, 2, 16]);
  assert.equal(m.vae.sha256, sha256File(path.join(vaeDir, 'diffusion_pytorch_model.safetensors')));
  for (const s of m.shards) assert.equal(s.sha256, sha256File(path.join(cache, s.file)));

  const files = scanImageFolder(images).items.map((it) => it.file);
  const pixels = await decodeImageFiles(files, SIZE);
  const x = torch.scope(() => pixels.float().div(127.5).sub(1));
  pixels.dispose();
  const ds = LatentCacheDataset.open(cache, { draw: 'mean' });
  const all = Array.from({ length: N }, (_, i) => i);
  for (const flipped of [false, true]) {
    const input = flipped ? x.flip(3) : x;
    const dist = torch.noGrad(() => vae.encode(input));
    const got = ds.moments(all, all.map(() => flipped));
    const meanErr = torch.scope(() => maxDiff(got.mean, dist.mean.mul(0.18215)));
    const logvarErr = torch.scope(() => maxDiff(got.logvar, dist.logvar.add(2 * Math.log(0.18215))));
    assert.ok(meanErr < 1e-5 && logvarErr < 1e-4, `flip ${flipped}: mean ${meanErr}, logvar ${logvarErr}`);
    // Round trip: the cached mean decodes to the VAE's own reconstruction of the image.
    const decoded = decodeLatentImages(vae, got.mean, 16);
    const direct = torch.noGrad(() => torch.scope(() => vae.forward(input).clamp(-1, 1)));
    assert.ok(maxDiff(decoded, direct) < 1e-4, `flip ${flipped}: decode differs by ${maxDiff(decoded, direct)}`);
    for (const t of [dist.mean, dist.logvar, dist.std, dist.parameters, got.mean, got.logvar, decoded, direct]) t.dispose();
  }
  // The two stored flips of a ramp differ, and labels follow the folder.
  const pair = [ds.moments([16], [false]).mean, ds.moments([16], [true]).mean];
  assert.ok(maxDiff(pair[0], pair[1]) > 1e-3);
  const { y } = ds.batch([0, 17, 33]);
  assert.deepEqual(y.toArray(), [0, 1, 2]);

  // Sampling draws mean + exp(logvar / 2) * eps from the global generator; the live tensor count stays flat.
  const sampled = LatentCacheDataset.open(cache, { verify: false });
  const { mean, logvar } = sampled.moments([3, 5], [true, false]);
  torch.manualSeed(11);
  const b = sampled.batch([3, 5], [true, false]);
  torch.manualSeed(11);
  const expected = torch.scope(() => mean.add(logvar.mul(0.5).exp().mul(torch.randnLike(mean))));
  assert.ok(maxDiff(b.x, expected) < 1e-6);
  const live = torch.liveTensorCount();
  for (let i = 0; i < 20; i++) {
    const r = sampled.batch([i, i + 1, i + 2], [i % 2 === 0, false, true]);
    r.x.dispose();
    r.y.dispose();
  }
  assert.equal(torch.liveTensorCount(), live);
  for (const t of [x, ...pair, y, mean, logvar, b.x, b.y, expected]) t.dispose();
  ds.dispose();
  sampled.dispose();
});

test('an interrupted encode resumes to the same shards; other inputs and a corrupted shard are refused, naming it', async () => {
  await encodeOnce();
  const out = path.join(root, 'resumed');
  let calls = 0;
  await assert.rejects(encodeLatentCache({
    ...base, out, onProgress: () => { if (++calls === 2) throw new Error('killed'); },
  }), /killed/);
  const partial = readLatentManifest(out);
  assert.equal(partial.count, 20);
  assert.equal(partial.complete, false);
  assert.throws(() => LatentCacheDataset.open(out), /incomplete \(20 of 34/);
  await encodeLatentCache({ ...base, out });
  const a = readLatentManifest(out);
  const b = readLatentManifest(cache);
  assert.deepEqual(a.shards.map((s) => s.sha256), b.shards.map((s) => s.sha256));

  await assert.rejects(encodeLatentCache({ ...base, out, shardSize: 8 }), /other inputs: shardSize \(cache: 10, now: 8\)/);

  const shard = path.join(out, 'shards', 'shard-000001.safetensors');
  const bytes = fs.readFileSync(shard);
  bytes[bytes.length - 3] ^= 0x40;
  fs.writeFileSync(shard, bytes);
  assert.throws(() => LatentCacheDataset.open(out), /shard-000001\.safetensors: latent shard is corrupted: sha256/);
  await assert.rejects(encodeLatentCache({ ...base, out }), /shard-000001\.safetensors: latent shard is corrupted/);
  // The trainer opens the cache with the same check, and refuses a cache from another VAE.
  const other = path.join(root, 'other-vae');
  writeTinyVae(other);
  fs.appendFileSync(path.join(other, 'config.json'), ' ');
  torch.manualSeed(99);
  torch.saveSafetensors(path.join(other, 'diffusion_pytorch_model.safetensors'),
    new AutoencoderKL({ blockOutChannels: [32, 32], layersPerBlock: 1, latentChannels: 4, normNumGroups: 32 }).stateDict());
  assert.throws(() => LatentCacheDataset.open(cache, { vaeSha256: sha256File(path.join(other, 'diffusion_pytorch_model.safetensors')) }),
    /encoded with another VAE/);
});

test('a latent DiT fine-tunes from the cache with Diff-Tuning and a latent bank (real trainer); sample --vae writes the decoded grid', async () => {
  await encodeOnce();
  const ckpt = path.join(root, 'latent-dit.safetensors');
  torch.manualSeed(0);
  const pretrained = new DiT({ inputSize: SIZE / 2, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, numClasses: 4 });
  torch.noGrad(() => {
    for (const [, p] of pretrained.namedParameters()) {
      if (p.requiresGrad && torch.scope(() => p.abs().max().item()) === 0) p.copy_(torch.scope(() => torch.randn(p.shape).mul(0.05)));
    }
  });
  saveDiT(ckpt, pretrained);
  const bank = path.join(root, 'bank');
  await buildBank({
    modelFile: ckpt, out: bank,
    settings: { n: 8, labels: 'uniform', cfg: 1, guideChannels: 'all', sampler: 'ddim', steps: 4, eta: 0, seed: 0, batchSize: 8, clip: false },
  });
  assert.equal(writeDecodedBank(bank, loadVae(vaeDir)), 8);
  const png = await sharp(bankDecodedPath(bank, 3)).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([png.info.width, png.info.height], [SIZE, SIZE]);
  assert.equal(writeDecodedBank(bank, loadVae(vaeDir)), 0, 'a second pass writes nothing');

  const out = path.join(root, 'run');
  const c = resolveConfig({
    values: {
      method: 'diff-tuning', model: { ckpt, vae: vaeDir }, data: { target: cache, bank },
      optim: { batchSize: 16, lr: 2e-3 }, ema: { decay: 0.5 },
      run: { steps: 30, out, logEvery: 10, checkpointEvery: 30, previewEvery: 0 },
    },
  });
  const inputs = await prepareInputs(c, () => {});
  assert.ok(inputs.latentCache, 'the target is the latent cache');
  assert.equal(inputs.flipTarget, true);
  assert.equal(inputs.flipBank, false);
  const trainer = new Trainer(c, inputs, { log: () => {}, progress: false });
  assert.deepEqual(trainer.split, { target: 13, replay: 3 });
  const probe = inputs.latentCache!.moments([...Array(N).keys()]);
  const probeY = inputs.latentCache!.batch([...Array(N).keys()]).y;
  const before = probeLoss(trainer.model, probe.mean, probeY);
  await trainer.run();
  const afterLoss = probeLoss(trainer.model, probe.mean, probeY);
  trainer.dispose();
  console.log(`# latent diff-tuning: probe loss ${before.toFixed(4)} -> ${afterLoss.toFixed(4)}`);
  assert.ok(afterLoss < 0.8 * before, `probe loss ${before} -> ${afterLoss}`);
  const model = path.join(out, 'model.safetensors');
  assert.ok(fs.existsSync(model));

  // A pixel folder for a latent model is refused with the encode command to run.
  const wrong = resolveConfig({ values: { method: 'full', model: { ckpt }, data: { target: images }, run: { out: path.join(root, 'x') } } });
  await assert.rejects(prepareInputs(wrong, () => {}), /latent models train on latent caches \(difftune datasets encode/);

  const grid = path.join(root, 'samples.png');
  await runSample(['--ckpt', model, '--vae', vaeDir, '--classes', '0,1,0,1', '--sampler', 'ddim', '--steps', '5', '--cfg', '1',
    '--out', grid, '--scale', '1']);
  const latents = torch.loadSafetensors(path.join(root, 'samples.safetensors')).get('samples')!;
  assert.deepEqual(latents.shape, [4, 4, SIZE / 2, SIZE / 2]);
  const img = await sharp(grid).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([img.info.width, img.info.height], [4 * SIZE + 5 * 2, SIZE + 2 * 2]);
  // The first tile is the VAE decode of the first latent sample, and the tiles are not all alike.
  const expected = imagesToUint8(decodeLatentImages(loadVae(vaeDir), latents));
  const tile = (k: number): number[] => {
    const px: number[] = [];
    for (let yy = 0; yy < SIZE; yy++) for (let xx = 0; xx < SIZE; xx++) for (let ch = 0; ch < 3; ch++) px.push(img.data[((2 + yy) * img.info.width + 2 + k * (SIZE + 2) + xx) * 3 + ch]);
    return px;
  };
  const first = tile(0);
  assert.ok(first.every((v, i) => Math.abs(v - expected[i]) <= 1), 'tile 0 is the decoded first sample');
  const spread = (px: number[]): number => Math.max(...px) - Math.min(...px);
  assert.ok(spread(first) > 10, `tile 0 is not flat (range ${spread(first)})`);
  assert.ok(tile(1).some((v, i) => Math.abs(v - first[i]) > 2), 'tiles differ');
  for (const t of [probe.mean, probe.logvar, probeY, latents]) t.dispose();
});
