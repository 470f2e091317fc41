// The settings a ControlNet run adds to the trainer's config: the `controlnet` section of a
// `difftune controlnet` config file (or --set controlnet.x=v). The rest of the file is an ordinary
// TrainConfig; the section is validated, printed and saved (RUN/controlnet.json) beside it.
import { CONDITION_KINDS, ConditionKind } from '../data/conditions';
import { readJsonObject } from '../models/json-file';
import { ConfigError, parseOverride, SectionSpec, setPath, validateSection } from './config-schema';
import { resolveConfig, TrainConfig } from './config';

export const CONTROLNET_SCHEMA = {
  condition: { type: 'enum', values: CONDITION_KINDS, default: 'canny', help: 'the condition extracted from every image (and again from samples, for the convergence metric)' },
  blocks: { type: 'number', default: null, nullable: true, integer: true, min: 1, help: 'leading DiT blocks copied into the control branch (default half the depth)' },
  labels: { type: 'enum', values: ['null', 'reuse'], default: 'null', help: "class label of every sample: the base model's null label, or target class k as base row k" },
  replayCondition: {
    type: 'enum', values: ['extracted', 'zero'], default: 'extracted',
    help: "diff-tuning: the condition of a bank item, extracted from it (the paper's wiring), or zero",
  },
  evalEvery: { type: 'number', default: 100, integer: true, min: 0, help: 'steps between convergence evaluations (0: none; step 0 is always measured when on)' },
  evalSamples: { type: 'number', default: 16, integer: true, min: 2, help: 'fixed held-out conditions sampled at each evaluation' },
  evalSteps: { type: 'number', default: 10, integer: true, min: 1, help: 'DDIM steps of the evaluation samples' },
  evalSeed: { type: 'number', default: 0, integer: true, min: 0, help: 'seed of the evaluation noise and held-out conditions (the same for every run to compare)' },
  evalWeights: {
    type: 'enum', values: ['raw', 'ema'], default: 'raw',
    help: "weights the convergence metric samples: the trained ones (ControlNet's reference trains without EMA) or the EMA",
  },
  thresholdFraction: {
    type: 'number', default: 0.5, min: 0, max: 1, exclusiveMin: true,
    help: 'convergence threshold = matched + fraction x (shuffled - matched) of the real pairs (see convergence.ts)',
  },
} as const satisfies SectionSpec;

export interface ControlNetSettings {
  condition: ConditionKind;
  blocks: number | null;
  labels: 'null' | 'reuse';
  replayCondition: 'extracted' | 'zero';
  evalEvery: number;
  evalSamples: number;
  evalSteps: number;
  evalSeed: number;
  evalWeights: 'raw' | 'ema';
  thresholdFraction: number;
}

/** The fields that change what a run learns (the others only how it is measured). */
export const CONTROLNET_IDENTITY = ['condition', 'blocks', 'labels', 'replayCondition'] as const;

export function validateControlNetSettings(value: unknown, where: string): ControlNetSettings {
  return validateSection(CONTROLNET_SCHEMA, value, where, 'controlnet') as unknown as ControlNetSettings;
}

/**
 * Both configs from one file and "path=value" overrides: `controlnet.*` paths go to the ControlNet
 * section, every other path to the TrainConfig; `method` defaults to "full". Errors name the file or the flag.
 */
export function resolveControlNetConfig(o: { file?: string; values?: Record<string, unknown>; overrides?: [string, string][] }):
  { train: TrainConfig; controlnet: ControlNetSettings } {
  const raw = o.file ? readJsonObject(o.file) : {};
  const merged = structuredClone({ ...raw, ...(o.values ?? {}) }) as Record<string, unknown>;
  // A ControlNet trains plainly unless asked for Diff-Tuning (finetune's default is diff-tuning).
  if (merged.method === undefined && !(o.overrides ?? []).some(([p]) => p === 'method')) merged.method = 'full';
  const where = o.file ? `${o.file} (with command-line overrides)` : 'config';
  const section = (merged.controlnet ?? {}) as Record<string, unknown>;
  delete merged.controlnet;
  const trainOverrides: [string, string][] = [];
  for (const [p, text] of o.overrides ?? []) {
    if (p.startsWith('controlnet.')) {
      const field = p.slice('controlnet.'.length);
      setPath(section, field, parseOverride(CONTROLNET_SCHEMA, field, text));
    } else {
      trainOverrides.push([p, text]);
    }
  }
  let train: TrainConfig;
  try {
    train = resolveConfig({ values: merged, overrides: trainOverrides });
  } catch (e) {
    if (o.file && e instanceof ConfigError) throw new ConfigError(where, e.field, e.message.replace(/^config: ('[^']*' )?/, ''));
    throw e;
  }
  const controlnet = validateControlNetSettings(section, where);
  if (train.method !== 'full' && train.method !== 'diff-tuning') {
    throw new ConfigError(where, 'method', `must be "full" or "diff-tuning" for a ControlNet, got "${train.method}"`);
  }
  if (train.peft.method !== 'none') throw new ConfigError(where, 'peft.method', 'must be "none": a ControlNet trains its own branch, the base stays frozen');
  if ((train.model as { gradCheckpointing?: boolean }).gradCheckpointing) {
    throw new ConfigError(where, 'model.gradCheckpointing', 'is not supported for a DiT-ControlNet yet (its forward keeps the activations)');
  }
  if (train.eval.every !== 0) {
    throw new ConfigError(where, 'eval.every', 'must be 0 for a ControlNet (its in-loop metric is the convergence detector, controlnet.evalEvery)');
  }
  return { train, controlnet };
}
