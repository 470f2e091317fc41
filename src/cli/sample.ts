// `difftune sample`: class-conditional samples from a DiT checkpoint, saved as a PNG grid.
import * as path from 'path';
import { createDiffusion } from '../diffusion/create';
import { mulberry32 } from '../data/prng';
import { DiTConfig, ditConfig, DIT_MODELS, isDiTModelName } from '../models/dit';
import { loadDiT, readDiTConfig } from '../models/dit-io';
import { decodeLatentImages } from '../data/latent-images';
import { loadVae } from '../models/vae-io';
import { saveImageGrid } from '../report/grid';
import { sampleDiT } from '../tuning/bank';
import { saveImageFiles } from '../report/image-files';
import * as torch from '../torch';
import { Device, Tensor } from '../torch';
import { oneOf, parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { positiveInt, respacing } from './checks';
import { configureThreads } from './threads';
import { checkWritableDir } from './writable';

const FLAGS = {
  ckpt: { type: 'string', help: 'DiT weights: .safetensors (ours or diffusers layout) or an official .pt' },
  config: { type: 'string', default: '', help: 'JSON with the official constructor arguments (default: X.json or config.json beside the weights)' },
  model: { type: 'string', default: '', help: "an official config by name instead of --config, e.g. 'DiT-XL/2'" },
  'input-size': { type: 'number', default: 32, help: 'with --model: latent/image size (256px images -> 32 latents)' },
  'in-channels': { type: 'number', default: 4, help: 'with --model: input channels' },
  'num-classes': { type: 'number', default: 1000, help: 'with --model: number of classes' },
  key: { type: 'string', default: '', help: "which weights of a training checkpoint: 'ema' (default when present) or 'model'" },
  'skip-unknown': SKIP_UNKNOWN_FLAG,
  classes: { type: 'string', default: '', help: 'comma-separated class labels, one sample each' },
  n: { type: 'number', default: 16, help: 'number of samples with random classes when --classes is not given' },
  cfg: { type: 'number', default: 4.0, help: 'classifier-free guidance scale (1 = no guidance)' },
  'guide-channels': { type: 'string', default: '3', value: 'N|all', help: "channels that get guidance: '3' (the official DiT behaviour) or 'all'" },
  sampler: { type: 'string', default: 'ddpm', help: 'ddpm or ddim' },
  steps: { type: 'string', default: '250', value: 'N|ddimN', help: "timestep respacing: '250', 'ddim50', '25', ..." },
  eta: { type: 'number', default: 0, help: 'DDIM eta' },
  seed: { type: 'number', default: 0, help: 'random seed (torch.manual_seed)' },
  batch: { type: 'number', default: 64, help: 'samples per forward batch' },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
  out: { type: 'string', default: 'samples.png', help: 'a .png image grid, or a folder (DIR/, or a name without extension) of one PNG per image (pixel models, or latent models with --vae; their latents are also written beside it as .safetensors), or a .safetensors file of the raw samples' },
  vae: { type: 'string', default: '', help: 'latent models: the VAE (diffusers folder such as sd-vae-ft-ema, or a weights file) that decodes the samples for the PNG grid' },
  'vae-batch': { type: 'number', default: 8, help: 'latents decoded per VAE forward' },
  nrow: { type: 'number', default: 8, help: 'images per grid row' },
  scale: { type: 'number', default: 0, help: 'enlarge grid images by this integer factor (0: small images up to ~64 px)' },
  precision: { type: 'string', default: 'fp32', help: "'fp32' or 'bf16' (bf16 autocast around the model: faster where the CPU has bf16 instructions; samples differ from fp32 ones in the last bits)" },
  clip: { type: 'string', default: 'auto', help: "clip predicted x0 to [-1, 1]: 'auto' (pixel models yes, latents no, as DiT), 'yes', 'no'" },
} as const;

/** The classes to sample; random ones come from their own PRNG so torch's draws stay as sample.py's. */
function parseClasses(text: string, n: number, numClasses: number, seed: number): number[] {
  if (!text) {
    const rand = mulberry32(seed);
    return Array.from({ length: n }, () => Math.floor(rand() * numClasses));
  }
  const labels = text.split(',').map((s) => Number(s.trim()));
  for (const l of labels) {
    if (!Number.isInteger(l) || l < 0 || l >= numClasses) throw new Error(`--classes: '${l}' is not a class in 0..${numClasses - 1}`);
  }
  return labels;
}

function modelConfig(flags: { config: string; model: string; 'input-size': number; 'in-channels': number; 'num-classes': number }): DiTConfig | undefined {
  if (flags.config && flags.model) throw new Error('give either --config or --model, not both');
  if (flags.config) return readDiTConfig(flags.config);
  if (!flags.model) return undefined;
  if (!isDiTModelName(flags.model)) throw new Error(`--model: unknown DiT config '${flags.model}' (known: ${Object.keys(DIT_MODELS).join(', ')})`);
  return ditConfig(flags.model, { inputSize: flags['input-size'], inChannels: flags['in-channels'], numClasses: flags['num-classes'] });
}

export async function runSample(argv: string[]): Promise<void> {
  const flags = parseFlags('sample', 'Sample a DiT checkpoint to a PNG grid, a folder of PNGs (one per image) or a .safetensors file.', FLAGS, argv);
  if (!flags) return;
  if (!['ddpm', 'ddim'].includes(flags.sampler)) throw new Error(`--sampler must be ddpm or ddim, got '${flags.sampler}'`);
  // Checked before the model loads, so a bad value fails at once and names its flag.
  respacing('steps', flags.steps);
  for (const f of ['n', 'batch', 'vae-batch', 'nrow'] as const) positiveInt(f, flags[f]);
  const guide = flags['guide-channels'] === 'all' ? 'all' : Number(flags['guide-channels']);
  if (guide !== 'all' && !(Number.isInteger(guide) && guide > 0)) throw new Error(`--guide-channels must be a positive integer or 'all'`);
  configureThreads();
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);

  const kind = outputKind(flags.out);
  const toPng = kind !== 'tensor';
  checkWritableDir('out', kind === 'folder' ? flags.out : path.dirname(path.resolve(flags.out)));
  const { model, warnings } = loadDiT(flags.ckpt, { config: modelConfig(flags), key: flags.key || undefined, device, skipUnknown: flags['skip-unknown'] });
  for (const w of warnings) console.warn(`warning: ${w}`);
  model.eval();
  const c = model.config;
  const pixels = c.inChannels === 1 || c.inChannels === 3;
  if (toPng && !pixels && !flags.vae) {
    throw new Error(`--out ${flags.out}: this model makes ${c.inChannels}-channel latents, which need a VAE to become images: ` +
      'pass --vae (e.g. sd-vae-ft-ema), or write the raw samples with --out FILE.safetensors');
  }
  // Loaded before sampling, so a wrong VAE fails fast.
  const vae = flags.vae && !pixels ? loadVae(flags.vae, { device }) : null;
  if (vae && vae.config.latentChannels !== c.inChannels) {
    throw new Error(`--vae ${flags.vae}: the VAE has ${vae.config.latentChannels} latent channels but the model makes ${c.inChannels}-channel samples`);
  }
  const labels = parseClasses(flags.classes, flags.n, c.numClasses, flags.seed);
  if (!['auto', 'yes', 'no'].includes(flags.clip)) throw new Error(`--clip must be auto, yes or no, got '${flags.clip}'`);
  const clipDenoised = flags.clip === 'auto' ? pixels : flags.clip === 'yes';
  const precision = oneOf('precision', flags.precision, ['fp32', 'bf16'] as const);
  const diffusion = createDiffusion({ timestepRespacing: flags.steps, learnSigma: c.learnSigma });
  torch.manualSeed(flags.seed);
  console.log(`sampling ${labels.length} images (${flags.sampler}, ${diffusion.numTimesteps} steps, cfg ${flags.cfg}) ` +
    `from a ${c.depth}-block DiT on ${c.inputSize}x${c.inputSize}x${c.inChannels}`);

  const chunks: Tensor[] = [];
  for (let start = 0; start < labels.length; start += flags.batch) {
    const part = labels.slice(start, start + flags.batch);
    chunks.push(torch.noGrad(() => torch.scope(() => sampleDiT(model, diffusion, {
      labels: torch.tensor(part, { dtype: 'int64', device }),
      noise: torch.randn([part.length, c.inChannels, c.inputSize, c.inputSize], { device }),
      cfg: flags.cfg, guideChannels: guide, sampler: flags.sampler as 'ddpm' | 'ddim', eta: flags.eta, clip: clipDenoised, device, precision,
      progress: (done, total) => { if (done % 25 === 0 || done === total) process.stdout.write(`\r  step ${done}/${total}`); },
    }))));
    process.stdout.write('\n');
  }
  const samples = torch.cat(chunks, 0);
  const labelTensor = torch.tensor(labels, { dtype: 'int64' });
  if (!toPng) {
    torch.saveSafetensors(flags.out, { samples, labels: labelTensor });
    console.log(`wrote ${flags.out}`);
    return;
  }
  let images = samples;
  if (vae) {
    const latentFile = kind === 'folder' ? path.join(flags.out, 'latents.safetensors') : flags.out.replace(/\.png$/i, '.safetensors');
    torch.saveSafetensors(latentFile, { samples, labels: labelTensor });
    console.log(`wrote ${latentFile} (the latents; \`difftune eval --samples ${latentFile} --vae ${flags.vae}\` evaluates them)`);
    images = decodeLatentImages(vae, samples, flags['vae-batch']);
  }
  if (kind === 'folder') {
    const files = saveImageFiles(flags.out, images, labels);
    console.log(`wrote ${files.length} PNGs to ${flags.out} (\`difftune eval --samples ${flags.out}\` evaluates them)`);
  } else {
    saveImageGrid(flags.out, images, flags.nrow, flags.scale || Math.max(1, Math.floor(64 / images.shape[2])));
    console.log(`wrote ${flags.out}`);
  }
  if (images !== samples) images.dispose();
}

/** --out: a .png grid, a .safetensors file, or a folder of PNGs (ends in '/', or has no extension). */
function outputKind(out: string): 'grid' | 'tensor' | 'folder' {
  if (/\.png$/i.test(out)) return 'grid';
  if (/\.safetensors$/i.test(out)) return 'tensor';
  if (out.endsWith('/') || path.extname(out) === '') return 'folder';
  throw new Error(`--out must be a .png grid, a .safetensors file or a folder (DIR/), got '${out}'`);
}
