// Text-to-image sampling with Stable Diffusion, optionally steered by a ControlNet: the loop of
// diffusers' StableDiffusionPipeline / StableDiffusionControlNetPipeline (prompt embeddings with
// classifier-free guidance, initial noise, scheduler steps, VAE decoding), and the parts read from
// a diffusers pipeline folder.
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../../torch';
import { Generator, Tensor } from '../../torch';
import type { DType } from '../../torch/dtype';
import type { Device } from '../../torch/tensor';
import {
  DdimScheduler, DdpmScheduler, PndmScheduler, SchedulerKind, schedulerFromConfig, SD15_SCHEDULER_JSON,
} from '../../diffusion/schedulers';
import { readJsonObject } from '../json-file';
import { AutoencoderKL, decodeLatents } from '../vae';
import { loadVae } from '../vae-io';
import { ClipTextModel } from './clip-text';
import { loadClipTextModel } from './clip-text-io';
import { ClipTokenizer, loadClipTokenizer } from './clip-tokenizer';
import { ControlNetModel } from './controlnet';
import { guidedPrediction, promptEmbeds, usesGuidance } from './guidance';
import { UNet2DConditionModel } from './unet-2d-condition';
import { loadControlNet, loadUNet } from './unet-io';

export type SdScheduler = DdimScheduler | DdpmScheduler | PndmScheduler;

export interface StableDiffusionParts {
  unet: UNet2DConditionModel;
  textEncoder: ClipTextModel;
  tokenizer: ClipTokenizer;
  scheduler: SdScheduler;
  /** Decodes the final latents to images; without it the pipeline returns latents only. */
  vae?: AutoencoderKL;
  controlnet?: ControlNetModel;
}

export interface GenerateOptions {
  prompts: string[];
  /** One for all prompts or one per prompt; default "". */
  negativePrompts?: string | string[];
  /** Default 50. */
  steps?: number;
  /** Default 7.5; 1 or less samples without guidance (one model pass per step). */
  guidanceScale?: number;
  imagesPerPrompt?: number;
  /** Image size in pixels; default the UNet's sampleSize times the VAE's factor (8). */
  height?: number;
  width?: number;
  /** Draws the initial noise and the noise of stochastic steps (CPU by default, as diffusers' randn_tensor). */
  generator?: Generator;
  /** Initial latents [B*n, C, h, w] instead of drawn noise (scaled by the scheduler's initNoiseSigma). */
  latents?: Tensor;
  /** DDIM's eta (default 0). */
  eta?: number;
  /** The ControlNet's condition image [1 or B*n, 3, H, W], RGB in [0, 1], at the image size. */
  image?: Tensor;
  /** Multiplies the ControlNet's residuals (default 1). */
  controlnetConditioningScale?: number;
  /** The ControlNet sees the conditional half only, its residuals scaled 0.1 -> 1 (diffusers' guess_mode). */
  guessMode?: boolean;
  /** Called after every step with the step index, timestep and the new latents (for previews, progress). */
  onStep?: (i: number, t: number, latents: Tensor) => void;
}

export interface GenerateOutput {
  /** The final latents [B*n, C, h, w] (scaled, as the UNet sees them). */
  latents: Tensor;
  /** Decoded images [B*n, 3, H, W] in [0, 1] (when a VAE is given). */
  images: Tensor | null;
}

/** One scheduler step, whichever the scheduler: x_t -> x_{t-1}. */
export function schedulerStep(scheduler: SdScheduler, modelOutput: Tensor, t: number, latents: Tensor,
  o: { eta?: number; generator?: Generator } = {}): Tensor {
  return torch.scope(() => {
    if (scheduler instanceof DdimScheduler) return scheduler.step(modelOutput, t, latents, { eta: o.eta, generator: o.generator }).prevSample;
    if (scheduler instanceof DdpmScheduler) return scheduler.step(modelOutput, t, latents, { generator: o.generator }).prevSample;
    return scheduler.step(modelOutput, t, latents).prevSample;
  });
}

const VAE_FACTOR = 8;

function latentShape(parts: StableDiffusionParts, batch: number, o: GenerateOptions): number[] {
  const factor = parts.vae ? parts.vae.downsampleFactor : VAE_FACTOR;
  const sample = parts.unet.config.sampleSize ?? 64;
  const height = o.height ?? sample * factor;
  const width = o.width ?? sample * factor;
  if (height % factor || width % factor) throw new Error(`generate: height and width must be multiples of ${factor}, got ${height}x${width}`);
  return [batch, parts.unet.config.inChannels, height / factor, width / factor];
}

/** The ControlNet's input for the model batch: repeated to the images, then doubled for guidance (unless guess mode). */
function conditionBatch(image: Tensor, images: number, guided: boolean, guessMode: boolean): Tensor {
  return torch.scope(() => {
    if (image.ndim !== 4 || (image.shape[0] !== 1 && image.shape[0] !== images)) {
      throw new Error(`generate: image must be [1 or ${images}, C, H, W], got [${image.shape.join(', ')}]`);
    }
    const repeated = image.shape[0] === images ? image : image.expand(images, -1, -1, -1).contiguous();
    return guided && !guessMode ? torch.cat([repeated, repeated], 0) : repeated.clone();
  });
}

/**
 * Samples images for the prompts: encode prompts (with the negative prompts when guided), draw
 * the initial noise, run the scheduler's timesteps (UNet, plus the ControlNet's residuals when one
 * is given, combined by classifier-free guidance), decode with the VAE when given.
 */
export function generate(parts: StableDiffusionParts, o: GenerateOptions): GenerateOutput {
  const { unet, scheduler, controlnet } = parts;
  const guidanceScale = o.guidanceScale ?? 7.5;
  const guided = usesGuidance(guidanceScale);
  const steps = o.steps ?? 50;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`generate: steps must be a positive integer, got ${steps}`);
  if (controlnet && !o.image) throw new Error('generate: a ControlNet needs its condition image (image)');
  if (!controlnet && o.image) throw new Error('generate: image given without a ControlNet');
  // Shuffle-style ControlNets (global_pool_conditions) always run in guess mode, as in diffusers.
  const guessMode = (o.guessMode ?? false) || (controlnet?.config.globalPoolConditions ?? false);
  return torch.noGrad(() => {
    const embeds = torch.scope(() => promptEmbeds(parts.textEncoder, parts.tokenizer, o.prompts,
      { negativePrompts: o.negativePrompts, guidanceScale, imagesPerPrompt: o.imagesPerPrompt }).to(unet.dtype));
    const images = o.prompts.length * (o.imagesPerPrompt ?? 1);
    const shape = latentShape(parts, images, o);
    let latents: Tensor;
    if (o.latents) {
      if (o.latents.shape.join() !== shape.join()) throw new Error(`generate: latents must be [${shape}], got [${o.latents.shape}]`);
      latents = torch.scope(() => o.latents!.to({ dtype: unet.dtype, device: unet.conv_in.weight.device }).mul(scheduler.initNoiseSigma));
    } else {
      const device = o.generator?.device ?? 'cpu';
      latents = torch.scope(() => torch.randn(shape, { generator: o.generator, device }).to({ dtype: unet.dtype, device: unet.conv_in.weight.device })
        .mul(scheduler.initNoiseSigma));
    }
    const condition = controlnet && o.image ? conditionBatch(o.image, images, guided, guessMode) : null;
    scheduler.setTimesteps(steps);
    try {
      scheduler.timesteps.forEach((t, i) => {
        const next = torch.scope(() => {
          const prediction = guidedPrediction((x, tt, ehs) => {
            const input = scheduler.scaleModelInput(x, t);
            if (!controlnet || !condition) return unet.forward(input, tt, ehs);
            const guessOnly = guided && guessMode;
            // Guess mode: the ControlNet sees only the conditional half; the unconditional half gets zero residuals.
            const cnInput = guessOnly ? input.chunk(2, 0)[1] : input;
            const cnEmbeds = guessOnly ? ehs.chunk(2, 0)[1] : ehs;
            const cnT = guessOnly ? tt.chunk(2, 0)[1] : tt;
            const r = controlnet.forward(cnInput, cnT, cnEmbeds, condition,
              { conditioningScale: o.controlnetConditioningScale, guessMode });
            const pad = (d: Tensor): Tensor => (guessOnly ? torch.cat([torch.zerosLike(d), d], 0) : d);
            return unet.forward(input, tt, ehs, {
              downBlockAdditionalResiduals: r.downBlockResSamples.map(pad), midBlockAdditionalResidual: pad(r.midBlockResSample),
            });
          }, latents, t, embeds, guidanceScale);
          return schedulerStep(scheduler, prediction, t, latents, { eta: o.eta, generator: o.generator });
        });
        latents.dispose();
        latents = next;
        o.onStep?.(i, t, latents);
      });
    } catch (e) {
      latents.dispose();
      throw e;
    } finally {
      embeds.dispose();
      condition?.dispose();
      if (scheduler instanceof PndmScheduler) scheduler.resetState();
    }
    // Tensors made here belong to the caller's scope (if any); replaced ones are freed as the loop goes.
    const decoded = parts.vae
      ? torch.scope(() => decodeLatents(parts.vae!, latents).div(2).add(0.5).clamp(0, 1))
      : null;
    return { latents, images: decoded };
  });
}

// ---------------------------------------------------------------------------------------------
// A diffusers pipeline folder
// ---------------------------------------------------------------------------------------------

export interface LoadStableDiffusionOptions {
  /** Which sampler (pipelines build any of them from scheduler/scheduler_config.json); default the file's class (SD1.5: PNDM). */
  scheduler?: SchedulerKind;
  /** A ControlNet folder or file (diffusers or ControlNet 1.0/1.1 layout). */
  controlnet?: string;
  /** Leave the VAE out (latents only). */
  noVae?: boolean;
  device?: Device;
  dtype?: DType;
  onWarning?: (message: string) => void;
}

const SCHEDULER_CLASSES: Record<string, SchedulerKind> = { DDPMScheduler: 'ddpm', DDIMScheduler: 'ddim', PNDMScheduler: 'pndm' };

/**
 * The parts of a diffusers Stable Diffusion folder (unet/, text_encoder/, tokenizer/, vae/,
 * scheduler/scheduler_config.json), each loaded strictly; the VAE is optional.
 */
export function loadStableDiffusion(dir: string, o: LoadStableDiffusionOptions = {}): StableDiffusionParts {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: no such Stable Diffusion pipeline folder`);
  const common = { device: o.device, dtype: o.dtype, onWarning: o.onWarning };
  const schedulerFile = path.join(dir, 'scheduler', 'scheduler_config.json');
  const schedulerJson = fs.existsSync(schedulerFile) ? readJsonObject(schedulerFile) : SD15_SCHEDULER_JSON;
  const className = String(schedulerJson._class_name ?? 'PNDMScheduler');
  const kind = o.scheduler ?? SCHEDULER_CLASSES[className];
  if (!kind) throw new Error(`${schedulerFile}: scheduler class ${JSON.stringify(className)} is not supported (choose ddpm, ddim or pndm)`);
  const vaeDir = path.join(dir, 'vae');
  return {
    unet: loadUNet(path.join(dir, 'unet'), common),
    textEncoder: loadClipTextModel(path.join(dir, 'text_encoder'), common),
    tokenizer: loadClipTokenizer(path.join(dir, 'tokenizer')),
    scheduler: schedulerFromConfig(kind, schedulerJson, schedulerFile),
    vae: !o.noVae && fs.existsSync(vaeDir) ? loadVae(vaeDir, common) : undefined,
    controlnet: o.controlnet ? loadControlNet(o.controlnet, common) : undefined,
  };
}
