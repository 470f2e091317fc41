// `difftune bank`: sample the knowledge bank (Diff-Tuning's replay set) from a frozen pretrained
// checkpoint. Re-running continues an interrupted bank; see src/tuning/bank.ts.
import * as path from 'path';
import { ditConfig, DiTModelName, DIT_MODELS, isDiTModelName } from '../models/dit';
import { readDiTConfig, siblingConfig } from '../models/dit-io';
import { ProgressBar } from '../report/progress';
import * as torch from '../torch';
import { Device } from '../torch';
import { loadVae } from '../models/vae-io';
import { buildBank, BankSettings, DECODED_DIR, writeDecodedBank } from '../tuning/bank';
import { oneOf, parseFlags, SKIP_UNKNOWN_FLAG } from './args';
import { configureThreads } from './threads';
import { checkWritableDir } from './writable';

const FLAGS = {
  ckpt: { type: 'string', help: 'the pretrained DiT: .safetensors (ours or diffusers layout) or an official .pt (training checkpoints give their EMA)' },
  config: { type: 'string', default: '', help: 'JSON with the official constructor arguments (default: X.json or config.json beside the weights)' },
  model: { type: 'string', default: '', help: "an official config by name instead of --config, for weights without one: 'DiT-XL/2' for DiT-XL-2-256x256.pt (32x32x4 latents, 1000 classes)" },
  'input-size': { type: 'number', default: 32, help: 'with --model: latent/image size (256px images -> 32 latents)' },
  'num-classes': { type: 'number', default: 1000, help: 'with --model: number of classes' },
  out: { type: 'string', help: 'the bank folder: new or empty, or an existing bank to resume' },
  n: { type: 'number', help: 'number of items (a larger n grows an existing bank)' },
  labels: { type: 'string', default: 'uniform', help: "'uniform' (balanced classes) or 'unconditional' (the null label, no guidance)" },
  cfg: { type: 'string', default: 'auto', help: "guidance scale; 'auto': 1.5 for uniform labels (DiT's sample_ddp.py), 1 for unconditional" },
  'guide-channels': { type: 'string', default: '3', value: 'N|all', help: "channels that get guidance: '3' (the official DiT behaviour) or 'all'" },
  sampler: { type: 'string', default: 'ddpm', help: 'ddpm or ddim' },
  steps: { type: 'number', default: 250, help: 'respaced sampling steps out of 1000' },
  eta: { type: 'number', default: 0, help: 'DDIM eta' },
  seed: { type: 'number', default: 0, help: 'item i depends only on (seed, i)' },
  batch: { type: 'number', default: 32, help: 'items per forward batch (part of the bank settings)' },
  precision: { type: 'string', default: 'fp32', help: "'fp32' or 'bf16' (bf16 autocast around the model; part of the bank's settings)" },
  'shard-size': { type: 'number', default: 0, help: 'items per shard of a latent bank (0: 1000, or the existing bank\'s)' },
  clip: { type: 'string', default: 'auto', help: "clip predicted x0 to [-1, 1]: 'auto' (pixel models yes, latents no, as DiT), 'yes', 'no'" },
  device: { type: 'string', default: 'cpu', help: "'cpu' or 'cuda' / 'cuda:N'" },
  force: { type: 'boolean', help: 'delete an existing bank in --out and start over' },
  'skip-unknown': SKIP_UNKNOWN_FLAG,
  vae: { type: 'string', default: '', help: `latent models: also write each item decoded through this VAE (diffusers folder or weights file) as ${DECODED_DIR}/NNNNNN.png, for viewing` },
} as const;

export async function runBank(argv: string[]): Promise<void> {
  const flags = parseFlags('bank', 'Sample a knowledge bank from a frozen pretrained DiT (resumable).', FLAGS, argv);
  if (!flags) return;
  const labels = oneOf('labels', flags.labels, ['uniform', 'unconditional'] as const);
  const cfg = flags.cfg === 'auto' ? (labels === 'uniform' ? 1.5 : 1) : Number(flags.cfg);
  if (!Number.isFinite(cfg)) throw new Error(`--cfg must be a number or 'auto', got '${flags.cfg}'`);
  const guide = oneOf('guide-channels', flags['guide-channels'], ['3', 'all'] as const);
  const clip = oneOf('clip', flags.clip, ['auto', 'yes', 'no'] as const);
  if (!/^(cpu|cuda(:\d+)?)$/.test(flags.device)) throw new Error(`--device must be cpu, cuda or cuda:N, got '${flags.device}'`);
  const device = flags.device as Device;
  if (device !== 'cpu' && !torch.cuda.isAvailable()) throw new Error(`--device ${device}: CUDA is not available in this build`);
  configureThreads();
  checkWritableDir('out', flags.out); // before the model loads and sampling starts

  if (flags.config && flags.model) throw new Error('give either --config or --model, not both');
  if (flags.model && !isDiTModelName(flags.model)) throw new Error(`--model: unknown DiT config '${flags.model}' (known: ${Object.keys(DIT_MODELS).join(', ')})`);
  const named = flags.model ? ditConfig(flags.model as DiTModelName, { inputSize: flags['input-size'], inChannels: 4, numClasses: flags['num-classes'] }) : undefined;
  // 'auto' clipping needs the channel count, which the config (or the one beside the weights) tells.
  const configFile = flags.config || siblingConfig(flags.ckpt) || undefined;
  const pixels = named ? false : configFile ? [1, 3].includes(readDiTConfig(configFile).inChannels) : false;
  const settings: BankSettings = {
    n: flags.n, labels, cfg, guideChannels: guide === 'all' ? 'all' : 3,
    sampler: oneOf('sampler', flags.sampler, ['ddpm', 'ddim'] as const), steps: flags.steps, eta: flags.eta, seed: flags.seed,
    batchSize: flags.batch, clip: clip === 'auto' ? pixels : clip === 'yes',
    ...(flags['shard-size'] ? { shardSize: flags['shard-size'] } : {}),
    ...(oneOf('precision', flags.precision, ['fp32', 'bf16'] as const) === 'bf16' ? { precision: 'bf16' as const } : {}),
  };
  console.log(`bank ${path.resolve(flags.out)}: ${settings.n} items, labels ${labels}, cfg ${cfg}, ${settings.sampler} ` +
    `${settings.steps} steps, seed ${settings.seed}, batch ${settings.batchSize}, on ${device}`);

  let bar = undefined as ProgressBar | undefined; // set in onStart (a cast, or TS narrows it to undefined)
  let itemsDone = 0;
  const manifest = await buildBank({
    modelFile: flags.ckpt, configFile: flags.config || undefined, config: named, skipUnknown: flags['skip-unknown'], out: flags.out, settings, device, force: flags.force,
    log: (line) => console.log(line),
    onStart: (done, total) => {
      itemsDone = done;
      bar = new ProgressBar({ total, label: 'bank', initial: done });
    },
    // Within a batch, count its items as done in proportion to the steps, so the ETA moves.
    onStep: (step, steps) => {
      const batchItems = Math.min(settings.batchSize, settings.n - itemsDone);
      bar?.update(itemsDone + Math.floor((step / steps) * batchItems), { step: `${step}/${steps}` });
    },
    onProgress: (done) => {
      itemsDone = done;
      bar?.update(done);
    },
  });
  bar?.done();
  console.log(`${flags.out}: ${manifest.count} of ${manifest.settings.n} items (${manifest.storage}), model sha256 ${manifest.model.sha256.slice(0, 16)}…`);
  if (flags.vae) {
    if (manifest.storage !== 'latents') throw new Error(`--vae: the bank in ${flags.out} holds images already (a pixel-space model); drop --vae`);
    const written = writeDecodedBank(flags.out, loadVae(flags.vae, { device }));
    console.log(`${path.join(flags.out, DECODED_DIR)}: ${written} decoded PNG${written === 1 ? '' : 's'} written`);
  }
}
