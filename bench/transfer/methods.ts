// The benchmark's methods (the columns of the paper's Table 1 and its ablation), each as the
// trainer configuration that realises it. DiffFit is a PEFT setting combined with a method.
import type { Method } from '../../src/tuning/config';

export const MAIN_METHODS = ['full', 'diff-tuning', 'difffit', 'difffit+diff-tuning'] as const;
export const ABLATION_METHODS = ['retention-only', 'reconsolidation-only'] as const;
export const METHOD_NAMES = [...MAIN_METHODS, ...ABLATION_METHODS] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

/** What the trainer is given for a method: its `method`, `peft.method`, and whether it replays the bank. */
export interface TrainerMethod {
  method: Exclude<Method, 'pretrain'>;
  peft: 'none' | 'difffit';
  usesBank: boolean;
  /** Whether objective.tau changes what the method learns (full fine-tuning draws t uniformly everywhere). */
  usesTau: boolean;
}

const TABLE: Record<MethodName, TrainerMethod> = {
  full: { method: 'full', peft: 'none', usesBank: false, usesTau: false },
  'diff-tuning': { method: 'diff-tuning', peft: 'none', usesBank: true, usesTau: true },
  difffit: { method: 'full', peft: 'difffit', usesBank: false, usesTau: false },
  'difffit+diff-tuning': { method: 'diff-tuning', peft: 'difffit', usesBank: true, usesTau: true },
  // retention-only draws replay t from xi ∝ (T - t)^tau, so tau matters there too.
  'retention-only': { method: 'retention-only', peft: 'none', usesBank: true, usesTau: true },
  'reconsolidation-only': { method: 'reconsolidation-only', peft: 'none', usesBank: false, usesTau: true },
};

export function isMethodName(s: string): s is MethodName {
  return (METHOD_NAMES as readonly string[]).includes(s);
}

export function trainerMethod(name: MethodName): TrainerMethod {
  const m = TABLE[name];
  if (!m) throw new Error(`unknown benchmark method '${name}' (known: ${METHOD_NAMES.join(', ')})`);
  return m;
}
