// Optimizer base: parameter groups with their own hyperparameters, per-parameter state
// tensors, and a state dict that saves and restores exactly (PyTorch's layout).
import { noGrad } from '../autograd';
import { Tensor } from '../tensor';

export type Hyper = Record<string, number | boolean | number[]>;

export interface ParamGroup<H extends Hyper> {
  params: Tensor[];
  options: H;
}

export interface OptimizerState {
  /** Per parameter (indexed across groups in order): its step count and state tensors. */
  state: Map<number, { step: number; tensors: Map<string, Tensor> }>;
  paramGroups: { options: Hyper; params: number[] }[];
}

export abstract class Optimizer<H extends Hyper> {
  readonly paramGroups: ParamGroup<H>[] = [];
  protected readonly state = new Map<Tensor, { step: number; tensors: Map<string, Tensor> }>();

  constructor(params: Tensor[] | { params: Tensor[]; options?: Partial<H> }[], readonly defaults: H) {
    const groups = params.length && params[0] instanceof Tensor
      ? [{ params: params as Tensor[] }]
      : (params as { params: Tensor[]; options?: Partial<H> }[]);
    for (const g of groups) this.addParamGroup(g.params, (g as { options?: Partial<H> }).options ?? {});
  }

  addParamGroup(params: Tensor[], options: Partial<H> = {}): void {
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const p of params) if (seen.has(p)) throw new Error('a parameter appears in more than one parameter group');
    this.paramGroups.push({ params: [...params], options: { ...this.defaults, ...options } as H });
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          const g = p.grad;
          if (!g) continue;
          let st = this.state.get(p);
          if (!st) {
            st = { step: 0, tensors: new Map() };
            this.state.set(p, st);
          }
          st.step += 1;
          this.update(p, g, st, group.options);
          g.dispose();
        }
      }
    });
  }

  /** One parameter's update; `state.tensors` holds its persistent buffers (keep() them). */
  protected abstract update(p: Tensor, grad: Tensor, state: { step: number; tensors: Map<string, Tensor> }, o: H): void;

  /** Clears gradients (set to none, PyTorch 2's default). */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.grad = null;
  }

  setLr(lr: number): void {
    for (const g of this.paramGroups) (g.options as Hyper).lr = lr;
  }

  private indexed(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** The state (tensors are the live ones: copy or save them, don't mutate). */
  stateDict(): OptimizerState {
    const params = this.indexed();
    const state: OptimizerState['state'] = new Map();
    params.forEach((p, i) => {
      const st = this.state.get(p);
      if (st) state.set(i, { step: st.step, tensors: new Map(st.tensors) });
    });
    let offset = 0;
    const paramGroups = this.paramGroups.map((g) => {
      const ids = g.params.map((_, j) => offset + j);
      offset += g.params.length;
      return { options: { ...g.options }, params: ids };
    });
    return { state, paramGroups };
  }

  /** Restores a state saved from an optimizer over the same parameters in the same order. */
  loadStateDict(sd: OptimizerState): void {
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`optimizer state has ${sd.paramGroups.length} parameter groups, this optimizer has ${this.paramGroups.length}`);
    }
    sd.paramGroups.forEach((g, i) => {
      if (g.params.length !== this.paramGroups[i].params.length) {
        throw new Error(`optimizer state group ${i} has ${g.params.length} parameters, expected ${this.paramGroups[i].params.length}`);
      }
    });
    const params = this.indexed();
    this.state.clear();
    noGrad(() => {
      for (const [i, st] of sd.state) {
        const p = params[i];
        if (!p) throw new Error(`optimizer state refers to parameter ${i}, which does not exist`);
        const tensors = new Map<string, Tensor>();
        for (const [name, t] of st.tensors) {
          if (t.shape.join() !== p.shape.join() && name !== 'step') {
            throw new Error(`optimizer state ${i}.${name} has shape [${t.shape}], parameter has [${p.shape}]`);
          }
          tensors.set(name, t.to({ device: p.device, copy: true }).keep());
        }
        this.state.set(p, { step: st.step, tensors });
      }
    });
    sd.paramGroups.forEach((g, i) => {
      this.paramGroups[i].options = { ...this.paramGroups[i].options, ...(g.options as H) };
    });
  }
}
