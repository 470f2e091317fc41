// Parameter-efficient fine-tuning of a DiT (the baselines of the paper's Table 1 and §5.1):
// DiffFit, BitFit, LoRA and AdaptFormer. applyPeft adds the method's adapter modules and leaves
// requiresGrad on exactly the parameters the method trains; everything else is frozen.
import { Tensor } from '../../torch';
import { Linear } from '../../torch/nn/layers';
import { noGrad } from '../../torch/autograd';
import { LoadReport, Module, StateDictError } from '../../torch/nn/module';
import { DiT } from '../dit';
import { AdaptFormerMlp } from './adaptformer';
import { LoRALinear } from './lora';
import { isBitFitParameter, isDiffFitParameter, isLabelTable, POS_EMBED } from './select';

export { LoRALinear } from './lora';
export { AdaptFormerMlp, BottleneckAdapter } from './adaptformer';
export { isBitFitParameter, isDiffFitParameter, isLabelTable, LABEL_TABLE, POS_EMBED } from './select';

export type PeftMethod = 'none' | 'difffit' | 'bitfit' | 'lora' | 'adaptformer';
export const PEFT_METHODS: readonly PeftMethod[] = ['none', 'difffit', 'bitfit', 'lora', 'adaptformer'];

export interface PeftOptions {
  method: PeftMethod;
  /** LoRA rank r (default 8, the paper's LoRA-R8 baseline). */
  loraRank?: number;
  /** LoRA alpha; the update is scaled by alpha / r (default alpha = r, i.e. 1). */
  loraAlpha?: number;
  /** Which linears of every block get LoRA: 'qkv', 'proj' (attn.*), 'fc1', 'fc2' (mlp.*); default all four. */
  loraTargets?: string[];
  /** AdaptFormer bottleneck width (default 64, AdaptFormer's). */
  adapterDim?: number;
  /** AdaptFormer output scale s (default 0.1, AdaptFormer's). */
  adapterScale?: number;
  /**
   * Train the label table too with BitFit, LoRA and AdaptFormer (needed with a fresh label table;
   * default false). DiffFit always trains it (the Diff-Tuning code's `y_embed` rule) and 'none' trains everything.
   */
  trainLabelTable?: boolean;
}

/**
 * Learning rates to start from. none: 1e-4 (the Diff-Tuning code's full fine-tuning); difffit:
 * 1e-3 (the code's DiffFit runs). bitfit: 1e-3, as DiffFit, of which it is the subset without
 * gammas. lora: 1e-4, the usual rate for LoRA on diffusion transformers. adaptformer: 1e-3, since
 * the branch is scaled by s = 0.1, so equal rates would move the output ten times less than full FT.
 */
export const PEFT_DEFAULT_LR: Readonly<Record<PeftMethod, number>> = Object.freeze({
  none: 1e-4,
  difffit: 1e-3,
  bitfit: 1e-3,
  lora: 1e-4,
  adaptformer: 1e-3,
});

/** Where each LoRA target sits inside a DiT block. */
const LORA_TARGETS: Readonly<Record<string, 'attn' | 'mlp'>> = { qkv: 'attn', proj: 'attn', fc1: 'mlp', fc2: 'mlp' };
export const DEFAULT_LORA_TARGETS: readonly string[] = Object.keys(LORA_TARGETS);

interface PeftRecord {
  method: PeftMethod;
  trainable: string[];
}

// What applyPeft did to a model, for peftStateDict and loadPeftStateDict.
const records = new WeakMap<DiT, PeftRecord>();

/** Adds adapter modules if needed and sets requiresGrad on exactly the method's parameters; returns trainable state-dict names. */
export function applyPeft(model: DiT, o: PeftOptions): string[] {
  if (!PEFT_METHODS.includes(o.method)) {
    throw new Error(`applyPeft: unknown method '${o.method}' (expected one of ${PEFT_METHODS.join(', ')})`);
  }
  const existing = adapterKeys(model);
  if (existing.length) {
    throw new Error(`applyPeft: the model already carries adapters (${existing[0]}, ...); apply PEFT to a plain DiT`);
  }
  let trains: (name: string) => boolean;
  switch (o.method) {
    case 'none':
      trains = (name) => name !== POS_EMBED;
      break;
    case 'difffit': {
      if (!model.config.useGamma) {
        throw new Error('applyPeft: DiffFit needs a DiT built with its gamma scales: construct it with ' +
          '{ ...config, useGamma: true } (config.json: "use_gamma": true) and load the pretrained weights with ' +
          '{ strict: false } (the gammas start at 1, which leaves the output unchanged)');
      }
      // The Diff-Tuning code always trains y_embed with DiffFit, whatever the label space.
      trains = (name) => isDiffFitParameter(name);
      break;
    }
    case 'bitfit': {
      const withTable = o.trainLabelTable ?? false;
      trains = (name) => isBitFitParameter(name) || (withTable && isLabelTable(name));
      break;
    }
    case 'lora':
    case 'adaptformer': {
      if (o.method === 'lora') addLoRA(model, o);
      else addAdaptFormer(model, o);
      const adapters = new Set(adapterKeys(model));
      const withTable = o.trainLabelTable ?? false;
      trains = (name) => adapters.has(name) || (withTable && isLabelTable(name));
      break;
    }
  }
  const trainable: string[] = [];
  for (const [name, p] of model.namedParameters()) {
    const on = trains(name);
    if (p.requiresGrad !== on) p.requiresGrad = on;
    if (on) trainable.push(name);
  }
  records.set(model, { method: o.method, trainable });
  return [...trainable];
}

function addLoRA(model: DiT, o: PeftOptions): void {
  const rank = o.loraRank ?? 8;
  const alpha = o.loraAlpha ?? rank;
  const targets = o.loraTargets ?? [...DEFAULT_LORA_TARGETS];
  if (!targets.length) throw new Error('applyPeft: loraTargets is empty (expected some of qkv, proj, fc1, fc2)');
  for (const t of targets) {
    if (!Object.prototype.hasOwnProperty.call(LORA_TARGETS, t)) {
      throw new Error(`applyPeft: unknown LoRA target '${t}' (expected some of ${DEFAULT_LORA_TARGETS.join(', ')})`);
    }
  }
  for (const block of model.blocks) {
    for (const t of new Set(targets)) {
      const parent: Module = LORA_TARGETS[t] === 'attn' ? block.attn : block.mlp;
      const base = (parent as unknown as Record<string, unknown>)[t] as Linear;
      parent.replaceModule(t, new LoRALinear(base, rank, alpha));
    }
  }
}

function addAdaptFormer(model: DiT, o: PeftOptions): void {
  const dim = o.adapterDim ?? 64;
  const scale = o.adapterScale ?? 0.1;
  for (const block of model.blocks) {
    block.replaceModule('mlp', new AdaptFormerMlp(block.mlp, dim, scale));
  }
}

/** State-dict names of the adapter tensors (LoRA factors, AdaptFormer adapters): what a plain DiT lacks. */
export function adapterKeys(model: Module): string[] {
  const out: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (m instanceof LoRALinear) out.push(`${path}.lora_A`, `${path}.lora_B`);
    else if (m instanceof AdaptFormerMlp) out.push(...m.adapter.stateDict(`${path}.adapter.`).keys());
  }
  return out;
}

/** The method applyPeft last applied to this model, or null (never applied, or LoRA merged since). */
export function peftMethodOf(model: DiT): PeftMethod | null {
  return records.get(model)?.method ?? null;
}

function recordOf(model: DiT, what: string): PeftRecord {
  const r = records.get(model);
  if (!r) throw new Error(`${what}: the model has no PEFT applied (call applyPeft first)`);
  return r;
}

/** Only the tensors a method trains (adapters for lora/adaptformer; the trainable subset for difffit/bitfit), the tensors themselves. */
export function peftStateDict(model: DiT): Map<string, Tensor> {
  const { trainable } = recordOf(model, 'peftStateDict');
  const sd = model.stateDict();
  return new Map(trainable.map((name) => [name, sd.get(name)!]));
}

/**
 * Loads what peftStateDict saved into a model adapted with the same options (and its base weights
 * already loaded). Strict: every trained tensor must be present with its shape, and nothing else.
 */
export function loadPeftStateDict(model: DiT, sd: Map<string, Tensor>, what = 'PEFT state dict'): void {
  const { trainable } = recordOf(model, 'loadPeftStateDict');
  const own = model.stateDict();
  const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
  for (const name of trainable) {
    const src = sd.get(name);
    const t = own.get(name)!;
    if (!src) report.missing.push(name);
    else if (src.shape.join() !== t.shape.join()) report.mismatched.push({ key: name, expected: t.shape, got: src.shape });
  }
  const wanted = new Set(trainable);
  for (const key of sd.keys()) if (!wanted.has(key)) report.unexpected.push(key);
  if (report.missing.length + report.unexpected.length + report.mismatched.length) throw new StateDictError(report, what);
  noGrad(() => {
    for (const name of trainable) own.get(name)!.copy_(sd.get(name)!);
  });
}

/**
 * Loads an official-layout (plain DiT) state dict into an adapted model: strict on every base
 * tensor, while the adapter tensors absent from `sd` keep their values.
 */
export function loadBaseStateDict(model: DiT, sd: Map<string, Tensor>, what = 'state dict'): LoadReport {
  const merged = new Map(sd);
  const own = model.stateDict();
  for (const key of adapterKeys(model)) if (!merged.has(key)) merged.set(key, own.get(key)!);
  return model.loadStateDict(merged, { strict: true, what });
}

/**
 * Folds W += (alpha / r) B A into every LoRA linear and puts the original nn.Linear (holding that
 * weight) back in its place, so the model saves and samples as a plain DiT. The factors are freed.
 */
export function mergeLoRA(model: DiT): void {
  let merged = 0;
  for (const [, parent] of model.namedModules()) {
    for (const [name, child] of parent.namedChildren()) {
      if (child instanceof LoRALinear) {
        parent.replaceModule(name, child.merge());
        merged++;
      }
    }
  }
  if (!merged) throw new Error('mergeLoRA: the model has no LoRA layers (applyPeft with method lora adds them)');
  records.delete(model);
}
