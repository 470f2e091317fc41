// Classifier-free guidance with text prompts, as diffusers' Stable Diffusion pipelines do it:
// the prompts and the negative (default empty) prompts go through the CLIP text encoder, the
// embeddings are batched [negative; prompt], the latents duplicated, and the two noise
// predictions combined as uncond + s * (cond - uncond). Guidance applies only when s > 1.
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import { guide } from '../../diffusion/cfg';
import { ClipTextModel } from './clip-text';
import { ClipTokenizer } from './clip-tokenizer';

/** diffusers' do_classifier_free_guidance: a scale of 1 or less means one conditional pass. */
export function usesGuidance(guidanceScale: number): boolean {
  return guidanceScale > 1;
}

/**
 * The prompts' text embeddings, tokenized to the tokenizer's max length (77) with truncation:
 * lastHiddenState, or with clipSkip k the output of the k-th layer from the end through
 * final_layer_norm (diffusers' clip_skip; 0 is the same as none).
 */
export function encodeText(textEncoder: ClipTextModel, tokenizer: ClipTokenizer, prompts: string[], clipSkip?: number): Tensor {
  if (prompts.length === 0) throw new Error('encodeText: no prompts');
  const layers = textEncoder.config.numHiddenLayers;
  if (clipSkip !== undefined && (!Number.isInteger(clipSkip) || clipSkip < 0 || clipSkip >= layers)) {
    throw new RangeError(`encodeText: clipSkip must be an integer in 0..${layers - 1}, got ${clipSkip}`);
  }
  return torch.scope(() => torch.noGrad(() => {
    const { inputIds } = tokenizer.call(prompts, { padding: 'max_length', truncation: true });
    const device = textEncoder.text_model.embeddings.token_embedding.weight.device;
    const out = textEncoder.forward(inputIds.to({ device }), { outputHiddenStates: clipSkip !== undefined });
    if (clipSkip === undefined) return out.lastHiddenState;
    const hidden = out.hiddenStates!;
    return textEncoder.text_model.final_layer_norm.forward(hidden[hidden.length - 1 - clipSkip]);
  }));
}

export interface PromptEmbedsOptions {
  /** One per prompt (or one for all); default "" (the unconditional embedding SD was trained with). */
  negativePrompts?: string | string[];
  /** With a scale > 1 the result holds [negative; prompt] rows; otherwise the prompts' rows only. */
  guidanceScale: number;
  /** diffusers' num_images_per_prompt: each prompt's row repeated n times (default 1). */
  imagesPerPrompt?: number;
  /** diffusers' clip_skip (see encodeText). */
  clipSkip?: number;
}

/**
 * The encoder_hidden_states of a pipeline call (diffusers' encode_prompt): [B*n, 77, D] without
 * guidance, [2*B*n, 77, D] = cat([negative, prompt]) with it.
 */
export function promptEmbeds(textEncoder: ClipTextModel, tokenizer: ClipTokenizer, prompts: string[], o: PromptEmbedsOptions): Tensor {
  const n = o.imagesPerPrompt ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`promptEmbeds: imagesPerPrompt must be a positive integer, got ${n}`);
  const neg = o.negativePrompts ?? '';
  const negatives = typeof neg === 'string' ? prompts.map(() => neg) : neg;
  if (negatives.length !== prompts.length) {
    throw new Error(`promptEmbeds: ${negatives.length} negative prompts for ${prompts.length} prompts (give one, or one per prompt)`);
  }
  return torch.scope(() => {
    const repeat = (e: Tensor): Tensor => (n === 1 ? e : e.repeatInterleave(n, 0));
    const cond = repeat(encodeText(textEncoder, tokenizer, prompts, o.clipSkip));
    if (!usesGuidance(o.guidanceScale)) return cond;
    return torch.cat([repeat(encodeText(textEncoder, tokenizer, negatives, o.clipSkip)), cond], 0);
  });
}

/** The model input of a guided step: cat([latents, latents]) (unconditional half first). */
export function guidanceBatch(latents: Tensor): Tensor {
  return torch.cat([latents, latents], 0);
}

/** A [2B, ...] prediction of a guidance batch -> uncond + scale * (cond - uncond), [B, ...]. */
export function combineGuidance(prediction: Tensor, guidanceScale: number): Tensor {
  const n = prediction.shape[0];
  if (n % 2) throw new Error(`combineGuidance: batch of ${n} is odd (expected [uncond; cond] halves)`);
  return torch.scope(() => {
    const [uncond, cond] = prediction.chunk(2, 0);
    return guide(cond, uncond, guidanceScale);
  });
}

/** One denoising prediction: model(x, t, encoderHiddenStates) for [B, ...] latents. */
export type TextConditionedModel = (x: Tensor, t: Tensor, encoderHiddenStates: Tensor) => Tensor;

/**
 * The guided noise prediction of one step: with guidance, the model sees the duplicated latents
 * and the [negative; prompt] embeddings of promptEmbeds (models with more inputs, such as a
 * ControlNet's image, duplicate those inside the callback the same way). t is one timestep
 * broadcast to the batch (a number) or a [batch] tensor.
 */
export function guidedPrediction(model: TextConditionedModel, latents: Tensor, t: number | Tensor, embeds: Tensor,
  guidanceScale: number): Tensor {
  return torch.scope(() => {
    const guided = usesGuidance(guidanceScale);
    const x = guided ? guidanceBatch(latents) : latents;
    if (embeds.shape[0] !== x.shape[0]) {
      throw new Error(`guidedPrediction: ${embeds.shape[0]} embedding rows for a model batch of ${x.shape[0]}` +
        (guided ? ' (guidance needs the [negative; prompt] rows of promptEmbeds)' : ''));
    }
    const tt = typeof t === 'number'
      ? torch.full([x.shape[0]], t, { dtype: 'int64', device: x.device })
      : t.ndim === 0 || t.shape[0] === x.shape[0] ? t : guidanceBatch(t);
    const out = model(x, tt, embeds);
    return guided ? combineGuidance(out, guidanceScale) : out;
  });
}
