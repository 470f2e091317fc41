import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { test } from 'node:test';
import { sha256Bytes, sha256File } from '../src/data/hash';
import { cfgBatch, conditionalHalf } from '../src/diffusion/cfg';
import { createDiffusion } from '../src/diffusion/create';
import { DiT } from '../src/models/dit';
import { loadDiT, saveDiT } from '../src/models/dit-io';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { bankLabels, BankSettings, buildBank, loadBankLatents, readBankManifest, verifyBank } from '../src/tuning/bank';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-bank-'));
const NUM_CLASSES = 5;

/** A tiny DiT with every weight random (the official init zeroes the output layer, which would make all samples alike). */
function makeModel(name: string, inChannels: number, seed: number): string {
  torch.manualSeed(seed);
  const model = new DiT({ inputSize: 8, patchSize: 2, inChannels, hiddenSize: 32, depth: 2, numHeads: 2, numClasses: NUM_CLASSES });
  torch.noGrad(() => {
    for (const [key, p] of model.namedParameters()) if (key !== 'pos_embed') p.normal_(0, 0.2);
  });
  const file = path.join(tmp, 'models', `${name}.safetensors`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  saveDiT(file, model);
  return file;
}

const pixelModel = makeModel('pixel', 3, 1);
const latentModel = makeModel('latent', 4, 2);
const otherModel = makeModel('other', 3, 3);

const pngSettings: BankSettings = {
  n: 10, labels: 'uniform', cfg: 1.5, guideChannels: 3, sampler: 'ddim', steps: 5, eta: 0, seed: 7, batchSize: 4, clip: true,
};
const latentSettings: BankSettings = {
  n: 10, labels: 'uniform', cfg: 1.5, guideChannels: 'all', sampler: 'ddpm', steps: 5, eta: 0, seed: 3, batchSize: 4, clip: false, shardSize: 3,
};

let dirCount = 0;
function freshDir(): string {
  return path.join(tmp, `bank-${dirCount++}`);
}

/** Every file under dir (relative path -> bytes), manifest.json excepted (it holds times). */
function filesOf(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (r !== 'manifest.json') out.set(r, fs.readFileSync(path.join(dir, r)));
    }
  };
  walk('');
  return out;
}

function assertSameFiles(a: string, b: string): void {
  const fa = filesOf(a);
  const fb = filesOf(b);
  assert.deepEqual([...fa.keys()].sort(), [...fb.keys()].sort());
  for (const [k, v] of fa) assert.ok(v.equals(fb.get(k)!), `${k} differs`);
}

/** The documented seed of item i: (first 4 bytes of sha256("difftune-bank/<seed>") + i) mod 2^32. */
function expectedItemSeed(seed: number, i: number): number {
  const h = crypto.createHash('sha256').update(`difftune-bank/${seed}`).digest();
  return (h.readUInt32BE(0) + i) % 2 ** 32;
}

/** Decodes the 8-bit RGB, filter-0 PNGs the bank writes (enough to read them back independently). */
function decodePng(file: string): { width: number; height: number; pixels: Buffer } {
  const buf = fs.readFileSync(file);
  assert.ok(buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])));
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (let off = 8; off < buf.length;) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8);
      assert.equal(data[9], 2, 'RGB');
    }
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    assert.equal(raw[y * (stride + 1)], 0, 'filter type 0');
    raw.copy(pixels, y * stride, y * (stride + 1) + 1, (y + 1) * (stride + 1));
  }
  return { width, height, pixels };
}

/** Per-item generators as the format defines them. */
function itemGenerators(seed: number, start: number, end: number): torch.Generator[] {
  return Array.from({ length: end - start }, (_, k) => new torch.Generator('cpu', expectedItemSeed(seed, start + k)));
}

function drawEach(gens: torch.Generator[], itemShape: number[]): Tensor {
  return torch.cat(gens.map((g) => torch.randn([1, ...itemShape], { generator: g })), 0);
}

test('sha256File hashes in chunks and agrees with sha256sum', () => {
  assert.equal(sha256Bytes('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  const file = path.join(tmp, 'big.bin');
  const data = Buffer.alloc(9 * 1024 * 1024 + 123);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(file, data);
  const expected = execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
  assert.equal(sha256File(file), expected);
  assert.throws(() => sha256File(path.join(tmp, 'nope.bin')), /nope\.bin: cannot open/);
});

test('uniform labels are balanced random permutations per block; unconditional ones are all null', () => {
  const s = { labels: 'uniform' as const, numClasses: 7, seed: 4 };
  const labels = bankLabels(s, 0, 7 * 5 + 3);
  for (let b = 0; b < 5; b++) assert.deepEqual(labels.slice(7 * b, 7 * b + 7).sort(), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(bankLabels(s, 20, 30), labels.slice(20, 30), 'a label depends on its index only');
  assert.notDeepEqual(labels.slice(0, 7), [0, 1, 2, 3, 4, 5, 6], 'shuffled, not i mod K');
  assert.notDeepEqual(bankLabels({ ...s, seed: 5 }, 0, 14), labels.slice(0, 14));
  // A bank smaller than K draws from all classes: 3 items of 1000 classes, over seeds.
  const firsts = new Set(Array.from({ length: 20 }, (_, seed) => bankLabels({ labels: 'uniform', numClasses: 1000, seed }, 0, 1)[0]));
  assert.ok(firsts.size >= 15 && [...firsts].some((c) => c >= 500));
  assert.deepEqual(bankLabels({ labels: 'unconditional', numClasses: 7, seed: 4 }, 3, 8), [7, 7, 7, 7, 7]);
});

test('a PNG bank: the manifest, one file per item, and images equal direct sampling with the same seeds', () => {
  const dir = freshDir();
  return (async () => {
    await buildBank({ modelFile: pixelModel, out: dir, settings: pngSettings });
    const m = readBankManifest(dir);
    const written = JSON.parse(fs.readFileSync(pixelModel.replace('.safetensors', '.json'), 'utf8')) as { model_args: object };
    assert.equal(m.format, 'difftune-bank');
    assert.equal(m.version, 1);
    assert.equal(m.storage, 'png');
    assert.equal(m.count, 10);
    assert.equal(m.model.file, 'pixel.safetensors');
    assert.equal(m.model.sha256, execFileSync('sha256sum', [pixelModel], { encoding: 'utf8' }).split(' ')[0]);
    assert.deepEqual(m.model.config, written.model_args);
    assert.deepEqual(m.settings, { ...pngSettings, numClasses: NUM_CLASSES });
    assert.ok(!Number.isNaN(Date.parse(m.created)) && Date.parse(m.updated) >= Date.parse(m.created));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['images', 'manifest.json']);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'images')).sort(),
      Array.from({ length: 10 }, (_, i) => `${String(i).padStart(6, '0')}.png`));

    // The same items sampled directly: DiT's sample.py loop, batch by batch, x_T from each item's generator.
    const { model } = loadDiT(pixelModel);
    model.eval();
    const diffusion = createDiffusion({ timestepRespacing: '5' });
    const labels = bankLabels(m.settings, 0, 10);
    for (let start = 0; start < 10; start += 4) {
      const end = Math.min(start + 4, 10);
      const expected = torch.noGrad(() => torch.scope(() => {
        const z = drawEach(itemGenerators(7, start, end), [3, 8, 8]);
        const batch = cfgBatch(z, torch.tensor(labels.slice(start, end), { dtype: 'int64' }), NUM_CLASSES);
        const out = diffusion.ddimSampleLoop((x, t, k: { y: Tensor }) => model.forwardWithCfg(x, t, k.y, 1.5), batch.x.shape,
          { noise: batch.x, modelKwargs: { y: batch.y }, clipDenoised: true, eta: 0 });
        // torchvision save_image: x in [-1, 1] -> (x + 1) / 2 * 255 + 0.5, clamped, truncated.
        return conditionalHalf(out).clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255).to({ dtype: 'uint8' })
          .permute(0, 2, 3, 1).contiguous().bytes();
      }));
      for (let i = start; i < end; i++) {
        const png = decodePng(path.join(dir, 'images', `${String(i).padStart(6, '0')}.png`));
        assert.equal(png.width, 8);
        assert.equal(png.height, 8);
        const size = 8 * 8 * 3;
        assert.ok(png.pixels.equals(Buffer.from(expected.subarray((i - start) * size, (i - start + 1) * size))), `image ${i}`);
      }
    }
    // No two items alike (no duplicated index or seed).
    const hashes = new Set(fs.readdirSync(path.join(dir, 'images')).map((f) => sha256File(path.join(dir, 'images', f))));
    assert.equal(hashes.size, 10);
  })();
});

async function interruptedThenResumed(modelFile: string, settings: BankSettings, stopAt: number): Promise<{ dir: string; resumedFrom: number[] }> {
  const dir = freshDir();
  await assert.rejects(buildBank({
    modelFile, out: dir, settings,
    onProgress: (done) => { if (done >= stopAt) throw new Error('interrupted'); },
  }), /interrupted/);
  assert.equal(readBankManifest(dir).count, stopAt, 'count = the committed items');
  const resumedFrom: number[] = [];
  await buildBank({ modelFile, out: dir, settings, onStart: (done) => resumedFrom.push(done), onProgress: (done) => resumedFrom.push(done) });
  return { dir, resumedFrom };
}

test('an interrupted then resumed PNG bank equals an uninterrupted one byte for byte', async () => {
  const whole = freshDir();
  await buildBank({ modelFile: pixelModel, out: whole, settings: pngSettings });
  const { dir, resumedFrom } = await interruptedThenResumed(pixelModel, pngSettings, 4);
  // Before resuming only the first batch's images existed; the resume started at 4.
  assert.deepEqual(resumedFrom, [4, 8, 10]);
  assertSameFiles(dir, whole);
  assert.equal(readBankManifest(dir).count, 10);
});

test('an interrupted then resumed latent bank equals an uninterrupted one, shards included', async () => {
  const whole = freshDir();
  await buildBank({ modelFile: latentModel, out: whole, settings: latentSettings });
  // Stopped after 8 items: shard 2 ([6, 9)) holds 2 items and must be continued, not restarted.
  const partial = freshDir();
  await assert.rejects(buildBank({
    modelFile: latentModel, out: partial, settings: latentSettings,
    onProgress: (done) => { if (done >= 8) throw new Error('interrupted'); },
  }), /interrupted/);
  assert.deepEqual(fs.readdirSync(path.join(partial, 'shards')).sort(),
    ['shard-000000.safetensors', 'shard-000001.safetensors', 'shard-000002.safetensors']);
  assert.deepEqual(torch.loadSafetensors(path.join(partial, 'shards', 'shard-000002.safetensors')).get('x')!.shape, [2, 4, 8, 8]);
  assert.equal(loadBankLatents(partial).x.shape[0], 8);
  await buildBank({ modelFile: latentModel, out: partial, settings: latentSettings });
  assertSameFiles(partial, whole);
  const shardSizes = fs.readdirSync(path.join(whole, 'shards')).sort()
    .map((f) => torch.loadSafetensors(path.join(whole, 'shards', f)).get('y')!.shape[0]);
  assert.deepEqual(shardSizes, [3, 3, 3, 1]);
});

test('latent items equal direct DDPM sampling with per-item noise; labels are the bank labels', async () => {
  const dir = freshDir();
  const m = await buildBank({ modelFile: latentModel, out: dir, settings: latentSettings });
  assert.equal(m.storage, 'latents');
  assert.equal(m.settings.shardSize, 3);
  const { x, y } = loadBankLatents(dir);
  assert.deepEqual(x.shape, [10, 4, 8, 8]);
  assert.equal(x.dtype, 'float32');
  assert.equal(y.dtype, 'int64');
  assert.deepEqual(y.toArray(), bankLabels(m.settings, 0, 10));
  const { model } = loadDiT(latentModel);
  model.eval();
  const diffusion = createDiffusion({ timestepRespacing: '5' });
  for (let start = 0; start < 10; start += 4) {
    const end = Math.min(start + 4, 10);
    const expected = torch.noGrad(() => torch.scope(() => {
      const gens = itemGenerators(3, start, end);
      const z = drawEach(gens, [4, 8, 8]);
      const batch = cfgBatch(z, y.slice(0, start, end), NUM_CLASSES);
      // Each item's step noise comes from its generator; the unconditional half's noise cannot matter.
      const noiseFn = (): Tensor => torch.cat([drawEach(gens, [4, 8, 8]), torch.randn([end - start, 4, 8, 8])], 0);
      const out = diffusion.pSampleLoop((xx, t, k: { y: Tensor }) => model.forwardWithCfg(xx, t, k.y, 1.5, { guideChannels: 'all' }),
        batch.x.shape, { noise: batch.x, modelKwargs: { y: batch.y }, clipDenoised: false, noiseFn });
      return conditionalHalf(out);
    }));
    assert.deepEqual(x.slice(0, start, end).bytes(), expected.bytes(), `items ${start}..${end - 1}`);
  }
});

test('an unconditional bank gives every item the null label and needs cfg 1', async () => {
  const settings: BankSettings = { ...latentSettings, labels: 'unconditional', cfg: 1, n: 5 };
  const dir = freshDir();
  await buildBank({ modelFile: latentModel, out: dir, settings });
  const { x, y } = loadBankLatents(dir);
  assert.deepEqual(y.toArray(), [NUM_CLASSES, NUM_CLASSES, NUM_CLASSES, NUM_CLASSES, NUM_CLASSES]);
  // The first batch equals the plain model run on the null label.
  const { model } = loadDiT(latentModel);
  model.eval();
  const diffusion = createDiffusion({ timestepRespacing: '5' });
  const expected = torch.noGrad(() => torch.scope(() => {
    const gens = itemGenerators(3, 0, 4);
    const z = drawEach(gens, [4, 8, 8]);
    return diffusion.pSampleLoop((xx, t, k: { y: Tensor }) => model.forward(xx, t, k.y), z.shape,
      { noise: z, modelKwargs: { y: torch.full([4], NUM_CLASSES, { dtype: 'int64' }) }, clipDenoised: false, noiseFn: () => drawEach(gens, [4, 8, 8]) });
  }));
  assert.deepEqual(x.slice(0, 0, 4).bytes(), expected.bytes());
  await assert.rejects(buildBank({ modelFile: latentModel, out: freshDir(), settings: { ...settings, cfg: 1.5 } }), /'cfg' must be 1 for an unconditional bank/);
});

test('re-running with other settings or another model names what differs; a complete bank is a no-op', async () => {
  const dir = freshDir();
  await buildBank({ modelFile: pixelModel, out: dir, settings: pngSettings });
  await assert.rejects(buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, cfg: 4 } }),
    (e: Error) => /cfg \(bank: 1\.5, now: 4\)/.test(e.message) && !/seed/.test(e.message));
  await assert.rejects(buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, seed: 8, sampler: 'ddpm' } }),
    (e: Error) => /sampler \(bank: "ddim", now: "ddpm"\)/.test(e.message) && /seed \(bank: 7, now: 8\)/.test(e.message));
  await assert.rejects(buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, n: 6 } }), /\bn \(bank: 10, now: 6\)/);
  await assert.rejects(buildBank({ modelFile: otherModel, out: dir, settings: pngSettings }), /model\.sha256/);
  const before = filesOf(dir);
  const mtimes = fs.readdirSync(path.join(dir, 'images')).map((f) => fs.statSync(path.join(dir, 'images', f)).mtimeMs);
  const logs: string[] = [];
  let progressCalls = 0;
  await buildBank({ modelFile: pixelModel, out: dir, settings: pngSettings, log: (l) => logs.push(l), onProgress: () => progressCalls++ });
  assert.equal(progressCalls, 0);
  assert.ok(logs.some((l) => /complete \(10 items\); nothing to do/.test(l)), logs.join('\n'));
  assert.deepEqual(fs.readdirSync(path.join(dir, 'images')).map((f) => fs.statSync(path.join(dir, 'images', f)).mtimeMs), mtimes);
  const after = filesOf(dir);
  assert.deepEqual([...after.keys()], [...before.keys()]);
  for (const [k, v] of before) assert.ok(v.equals(after.get(k)!), k);
  // --force starts over with the new settings.
  await buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, n: 3, seed: 1 }, force: true });
  assert.equal(readBankManifest(dir).settings.seed, 1);
  assert.equal(fs.readdirSync(path.join(dir, 'images')).length, 3);
});

test('a folder that is not a bank is never used or deleted', async () => {
  const dir = freshDir();
  fs.mkdirSync(path.join(dir, 'images'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'images', 'mine.png'), 'x');
  for (const force of [false, true]) {
    await assert.rejects(buildBank({ modelFile: pixelModel, out: dir, settings: pngSettings, force }), /not a difftune bank/);
  }
  assert.ok(fs.existsSync(path.join(dir, 'images', 'mine.png')));
});

test('growing a bank keeps its items and equals a fresh bank of the new size', async () => {
  const grown = freshDir();
  await buildBank({ modelFile: latentModel, out: grown, settings: { ...latentSettings, n: 8 } });
  await buildBank({ modelFile: latentModel, out: grown, settings: latentSettings });
  const fresh = freshDir();
  await buildBank({ modelFile: latentModel, out: fresh, settings: latentSettings });
  assertSameFiles(grown, fresh);
  assert.equal(readBankManifest(grown).settings.n, 10);
});

test('verifyBank: complete, enough items, the expected model, files present', async () => {
  const dir = freshDir();
  await buildBank({ modelFile: pixelModel, out: dir, settings: pngSettings });
  const sha = execFileSync('sha256sum', [pixelModel], { encoding: 'utf8' }).split(' ')[0];
  assert.equal(verifyBank(dir, { modelSha256: sha, minCount: 10 }).count, 10);
  const otherSha = execFileSync('sha256sum', [otherModel], { encoding: 'utf8' }).split(' ')[0];
  assert.throws(() => verifyBank(dir, { modelSha256: otherSha }), new RegExp(`sampled from another model: pixel\\.safetensors with sha256 ${sha}.*${otherSha}`));
  assert.throws(() => verifyBank(dir, { minCount: 11 }), /10 items, fewer than the 11 needed/);
  fs.rmSync(path.join(dir, 'images', '000007.png'));
  assert.throws(() => verifyBank(dir), /000007\.png: missing/);

  const partial = freshDir();
  await assert.rejects(buildBank({ modelFile: pixelModel, out: partial, settings: pngSettings, onProgress: () => { throw new Error('stop'); } }), /stop/);
  assert.throws(() => verifyBank(partial), /incomplete \(4 of 10 items\)/);

  const latent = freshDir();
  await buildBank({ modelFile: latentModel, out: latent, settings: latentSettings });
  verifyBank(latent);
  const shard = path.join(latent, 'shards', 'shard-000001.safetensors');
  torch.saveSafetensors(shard, { x: torch.zeros([2, 4, 8, 8]), y: torch.zeros([2], { dtype: 'int64' }) });
  assert.throws(() => verifyBank(latent), /shard-000001\.safetensors: expected x of shape \[3, 4, 8, 8\], found \[2, 4, 8, 8\]/);
  assert.throws(() => loadBankLatents(latent), /shard-000001\.safetensors: expected x float32 \[3, 4, 8, 8\]/);
});

test('readBankManifest names the file and the field that is wrong', async () => {
  const dir = freshDir();
  await buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, n: 2 } });
  const file = path.join(dir, 'manifest.json');
  const good = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, any>;
  const cases: [(m: Record<string, any>) => void, RegExp][] = [
    [(m) => { m.settings.cfg = 'high'; }, /'settings\.cfg' must be a number >= 1/],
    [(m) => { m.count = 3; }, /'count' must be an integer in 0\.\.settings\.n \(2\)/],
    [(m) => { m.model.sha256 = 'abc'; }, /'model\.sha256' must be a hex SHA-256/],
    [(m) => { m.format = 'other'; }, /'format' must be 'difftune-bank'/],
    [(m) => { delete m.settings.seed; }, /'settings\.seed' is missing/],
    [(m) => { m.settings.shardSize = 5; }, /'settings\.shardSize' belongs to latent banks only/],
  ];
  for (const [edit, message] of cases) {
    const m = JSON.parse(JSON.stringify(good)) as Record<string, any>;
    edit(m);
    fs.writeFileSync(file, JSON.stringify(m));
    assert.throws(() => readBankManifest(dir), (e: Error) => e.message.startsWith(file) && message.test(e.message), String(message));
  }
  fs.writeFileSync(file, '{');
  assert.throws(() => readBankManifest(dir), /manifest\.json: not readable JSON/);
  assert.throws(() => readBankManifest(path.join(tmp, 'nowhere')), /not a difftune knowledge bank \(no manifest\.json\)/);
});

test('bad settings are refused before anything is written', async () => {
  const dir = freshDir();
  await assert.rejects(buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, steps: 0 } }), /'steps' must be an integer in 1\.\.1000/);
  await assert.rejects(buildBank({ modelFile: pixelModel, out: dir, settings: { ...pngSettings, guideChannels: 2 as 3 } }), /'guideChannels' must be 3 or 'all'/);
  assert.ok(!fs.existsSync(dir));
});

test('difftune bank: flags map onto the settings (cfg and clip defaults follow the labels and the model)', async () => {
  const { runBank } = await import('../src/cli/bank');
  const dir = freshDir();
  const quiet = (fn: () => Promise<void>): Promise<void> => {
    const [log, err] = [console.log, process.stderr.write.bind(process.stderr)];
    console.log = () => undefined;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    return fn().finally(() => { console.log = log; process.stderr.write = err; });
  };
  await quiet(() => runBank(['--ckpt', pixelModel, '--out', dir, '--n', '3', '--sampler', 'ddim', '--steps', '2', '--batch', '2']));
  assert.deepEqual(readBankManifest(dir).settings, {
    n: 3, labels: 'uniform', numClasses: NUM_CLASSES, cfg: 1.5, guideChannels: 3, sampler: 'ddim', steps: 2, eta: 0, seed: 0, batchSize: 2, clip: true,
  });
  const uncond = freshDir();
  await quiet(() => runBank(['--ckpt', latentModel, '--out', uncond, '--n', '2', '--labels', 'unconditional', '--steps', '2', '--guide-channels', 'all']));
  const m = readBankManifest(uncond);
  assert.equal(m.settings.cfg, 1);
  assert.equal(m.settings.clip, false);
  assert.equal(m.settings.guideChannels, 'all');
  assert.equal(m.settings.shardSize, 1000);
  await assert.rejects(runBank(['--ckpt', pixelModel, '--out', freshDir(), '--n', '3', '--sampler', 'euler']), /--sampler must be ddpm or ddim, got 'euler'/);
});

test('a bf16 bank records its precision, differs from the float32 bank, and a float32 request does not resume it', async () => {
  const fp32 = path.join(tmp, 'prec-fp32');
  const bf16 = path.join(tmp, 'prec-bf16');
  const a = await buildBank({ modelFile: pixelModel, out: fp32, settings: pngSettings });
  const b = await buildBank({ modelFile: pixelModel, out: bf16, settings: { ...pngSettings, precision: 'bf16' } });
  assert.equal(a.settings.precision, undefined, 'float32 banks keep the manifest they always had');
  assert.equal(b.settings.precision, 'bf16');
  assert.equal(readBankManifest(bf16).settings.precision, 'bf16');
  const files = fs.readdirSync(path.join(fp32, 'images')).sort();
  const differing = files.filter((f) => !fs.readFileSync(path.join(fp32, 'images', f)).equals(fs.readFileSync(path.join(bf16, 'images', f))));
  assert.ok(differing.length > 0, 'bf16 sampling changes some pixels');
  await assert.rejects(buildBank({ modelFile: pixelModel, out: bf16, settings: pngSettings }), /precision \(bank: "bf16", now: "fp32"\)/);
});
