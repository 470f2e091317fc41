// Lifetime of native tensors. Every tensor created inside scope(fn) is freed when fn
// returns, except the tensors in its return value (handed to the enclosing scope) and
// tensors marked keep(). Outside any scope the GC finalizer frees them eventually.
import { native } from './native';

export interface Disposable {
  dispose(): void;
  readonly kept: boolean;
  readonly isDisposed: boolean;
}

const stack: Disposable[][] = [];

export function track(t: Disposable): void {
  if (stack.length) stack[stack.length - 1].push(t);
}

function collect(value: unknown, out: Set<Disposable>, depth: number): void {
  if (value === null || typeof value !== 'object' || depth > 8) return;
  if (isDisposable(value)) { out.add(value); return; }
  if (Array.isArray(value)) { for (const v of value) collect(v, out, depth + 1); return; }
  if (value instanceof Map) { for (const v of value.values()) collect(v, out, depth + 1); return; }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

function isDisposable(v: object): v is Disposable {
  return typeof (v as Disposable).dispose === 'function' && 'kept' in v;
}

/** Runs fn; frees the tensors it created that it neither returns nor keeps. fn must be synchronous. */
export function scope<T>(fn: () => T): T {
  const created: Disposable[] = [];
  stack.push(created);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of created) if (!t.kept) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new Error('scope(fn): fn returned a Promise; scopes are synchronous (await outside, or keep() what outlives it)');
  }
  const escaping = new Set<Disposable>();
  collect(result, escaping, 0);
  for (const t of created) {
    if (escaping.has(t)) track(t);
    else if (!t.kept) t.dispose();
  }
  return result;
}

/** How many scopes are open (for tests and diagnostics). */
export function scopeDepth(): number {
  return stack.length;
}

/** Tensor handles alive right now (not disposed nor collected): a leak detector. */
export function liveTensorCount(): number {
  return native.liveTensors();
}
