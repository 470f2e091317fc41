// Module: a tree of named parameters, buffers and submodules whose dotted names equal
// PyTorch's state_dict keys, so checkpoints map one to one.
import { noGrad } from '../autograd';
import { DType } from '../dtype';
import { Device, Tensor } from '../tensor';

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: number[]; got: number[] }[];
}

export type StateDict = Map<string, Tensor>;

export class StateDictError extends Error {
  constructor(readonly report: LoadReport, what: string) {
    const lines: string[] = [];
    if (report.missing.length) lines.push(`missing keys (${report.missing.length}): ${report.missing.join(', ')}`);
    if (report.unexpected.length) lines.push(`unexpected keys (${report.unexpected.length}): ${report.unexpected.join(', ')}`);
    for (const m of report.mismatched) lines.push(`shape mismatch for ${m.key}: model has [${m.expected}], ${what} has [${m.got}]`);
    super(`cannot load ${what}:\n  ${lines.join('\n  ')}`);
    this.name = 'StateDictError';
  }
}

export abstract class Module {
  training = true;
  private readonly params = new Map<string, Tensor | null>();
  private readonly buffers = new Map<string, { tensor: Tensor; persistent: boolean }>();
  private readonly children = new Map<string, Module>();

  /** Registers a trainable tensor under `name`; it is kept alive beyond any scope. */
  protected registerParameter(name: string, t: Tensor, requiresGrad = true): Tensor {
    this.checkName(name);
    t.keep();
    if (t.requiresGrad !== requiresGrad) t.requiresGrad = requiresGrad;
    this.params.set(name, t);
    return t;
  }

  /** Registers a non-trainable tensor; persistent buffers are part of the state dict. */
  protected registerBuffer(name: string, t: Tensor, persistent = true): Tensor {
    this.checkName(name);
    this.buffers.set(name, { tensor: t.keep(), persistent });
    return t;
  }

  protected registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this.children.set(name, m);
    return m;
  }

  /**
   * Swaps the registered child `name` for `m` (adapters such as LoRA wrap a layer in place): the
   * child keeps its place in the state-dict order, and the same-named property (`block.attn.qkv`)
   * then points at `m`, so forward uses it. The old module is not freed (the caller owns it).
   */
  replaceModule(name: string, m: Module): void {
    if (!this.children.has(name)) {
      throw new Error(`replaceModule: ${this.constructor.name} has no child '${name}' (children: ${[...this.children.keys()].join(', ') || 'none'})`);
    }
    // Children reached only through another field (ModuleList's items) would keep the old module in forward.
    const own = Object.getOwnPropertyDescriptor(this, name);
    if (!own || !own.writable || own.value !== this.children.get(name)) {
      throw new Error(`replaceModule: ${this.constructor.name}.${name} is not a plain property holding the child, so forward would keep the old module`);
    }
    this.children.set(name, m); // Map.set on an existing key keeps its insertion position
    (this as unknown as Record<string, unknown>)[name] = m;
  }

  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new Error(`invalid member name '${name}' (must be non-empty without dots)`);
    if (this.params.has(name) || this.buffers.has(name) || this.children.has(name)) {
      throw new Error(`'${name}' is already registered on ${this.constructor.name}`);
    }
  }

  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** This module and every descendant, with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.children) out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, p] of m.params) if (p) out.push([path ? `${path}.${name}` : name, p]);
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, b] of m.buffers) out.push([path ? `${path}.${name}` : name, b.tensor]);
    }
    return out;
  }

  /** Parameters and persistent buffers in PyTorch's state_dict order (the tensors themselves, not copies). */
  stateDict(prefix = ''): StateDict {
    const out: StateDict = new Map();
    for (const [name, p] of this.params) if (p) out.set(prefix + name, p);
    for (const [name, b] of this.buffers) if (b.persistent) out.set(prefix + name, b.tensor);
    for (const [name, child] of this.children) for (const [k, v] of child.stateDict(`${prefix}${name}.`)) out.set(k, v);
    return out;
  }

  /**
   * Copies values from a state dict into this module's tensors (converting dtype and device).
   * strict (default) throws a StateDictError listing every missing, unexpected and mis-shaped key;
   * non-strict loads what matches and returns the report.
   */
  loadStateDict(sd: StateDict | Record<string, Tensor>, o: { strict?: boolean; what?: string } = {}): LoadReport {
    const source = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    for (const [key, t] of own) {
      const src = source.get(key);
      if (!src) report.missing.push(key);
      else if (src.shape.join() !== t.shape.join()) report.mismatched.push({ key, expected: t.shape, got: src.shape });
    }
    for (const key of source.keys()) if (!own.has(key)) report.unexpected.push(key);
    const bad = report.missing.length + report.unexpected.length + report.mismatched.length;
    if ((o.strict ?? true) && bad) throw new StateDictError(report, o.what ?? 'state dict');
    const skip = new Set(report.mismatched.map((m) => m.key));
    noGrad(() => {
      for (const [key, t] of own) {
        const src = source.get(key);
        if (src && !skip.has(key)) t.copy_(src);
      }
    });
    return report;
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Stops (or restarts) gradient tracking for every parameter. */
  requiresGrad_(flag: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = flag;
    return this;
  }

  freeze(): this {
    return this.requiresGrad_(false);
  }

  unfreeze(): this {
    return this.requiresGrad_(true);
  }

  /** Moves/casts parameters and buffers in place (the same Tensor objects stay valid). */
  to(target: Device | DType | { device?: Device; dtype?: DType }): this {
    const o = typeof target === 'string'
      ? (target === 'cpu' || target.startsWith('cuda') ? { device: target as Device } : { dtype: target as DType })
      : target;
    noGrad(() => {
      for (const [, m] of this.namedModules()) {
        for (const p of m.params.values()) {
          if (!p) continue;
          const floating = p.dtype.startsWith('float') || p.dtype === 'bfloat16';
          const moved = p.to({ device: o.device, dtype: floating ? o.dtype : undefined });
          if (moved.sharesStorageWith(p) && moved.dtype === p.dtype) { moved.dispose(); continue; }
          const requires = p.requiresGrad;
          p.replaceWith(moved);
          p.requiresGrad = requires;
        }
        for (const b of m.buffers.values()) {
          const floating = b.tensor.dtype.startsWith('float') || b.tensor.dtype === 'bfloat16';
          const moved = b.tensor.to({ device: o.device, dtype: floating ? o.dtype : undefined });
          if (moved.sharesStorageWith(b.tensor) && moved.dtype === b.tensor.dtype) moved.dispose();
          else b.tensor.replaceWith(moved);
        }
      }
    });
    return this;
  }

  /**
   * Frees every parameter and buffer now instead of at garbage collection (large models, loops that
   * load many); the module must not be used afterwards.
   */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }

  /** Clears the gradients of every parameter (set to none, as PyTorch 2's default). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Total number of parameter elements. */
  numParameters(trainableOnly = false): number {
    return this.parameters().filter((p) => !trainableOnly || p.requiresGrad).reduce((n, p) => n + p.numel, 0);
  }
}
