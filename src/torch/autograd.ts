// Gradient mode and explicit gradient computation.
import { native } from './native';
import { Tensor, wrap } from './tensor';

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = native.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

/** Runs fn with gradient recording off (torch.no_grad()). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with gradient recording on (torch.enable_grad()). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

export interface GradOptions { retainGraph?: boolean; createGraph?: boolean; allowUnused?: boolean }

/** Accumulates d(sum of outputs)/d(leaves) into .grad, as torch.autograd.backward. */
export function backward(outputs: Tensor[], gradients?: (Tensor | null)[], o: GradOptions = {}): void {
  native.backward(outputs.map((t) => t.h), gradients?.map((g) => g?.h ?? null), o.retainGraph, o.createGraph ?? false);
}

/** Gradients of outputs with respect to inputs, returned rather than accumulated (torch.autograd.grad). */
export function grad(outputs: Tensor[], inputs: Tensor[], gradOutputs?: (Tensor | null)[], o: GradOptions = {}): (Tensor | null)[] {
  const hs = native.autogradGrad(outputs.map((t) => t.h), inputs.map((t) => t.h), gradOutputs?.map((g) => g?.h ?? null),
    o.retainGraph, o.createGraph ?? false, o.allowUnused ?? false);
  return hs.map((h) => wrap(h));
}
