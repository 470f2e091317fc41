// Standard layers with PyTorch's parameter names and default initialisation.
import { empty, ones, zeros } from '../creation';
import * as F from '../functional';
import { noGrad } from '../autograd';
import { Tensor } from '../tensor';
import { fans, kaimingUniform_, normal_, uniform_ } from './init';
import { Module } from './module';

/** A module mapping one tensor to one tensor (what Sequential chains). */
export interface TensorModule extends Module {
  forward(x: Tensor): Tensor;
}

export class Linear extends Module implements TensorModule {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    kaimingUniform_(this.weight, Math.sqrt(5));
    this.bias = bias ? this.registerParameter('bias', empty([outFeatures])) : null;
    if (this.bias) {
      const bound = 1 / Math.sqrt(inFeatures);
      uniform_(this.bias, -bound, bound);
    }
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** nn.BatchNorm2d with PyTorch's names (running_mean, running_var, num_batches_tracked). */
export class BatchNorm2d extends Module implements TensorModule {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly running_mean: Tensor;
  readonly running_var: Tensor;
  readonly num_batches_tracked: Tensor;
  constructor(readonly numFeatures: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.registerParameter('weight', ones([numFeatures]));
    this.bias = this.registerParameter('bias', zeros([numFeatures]));
    this.running_mean = this.registerBuffer('running_mean', zeros([numFeatures]));
    this.running_var = this.registerBuffer('running_var', ones([numFeatures]));
    this.num_batches_tracked = this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64' }));
  }
  forward(x: Tensor): Tensor {
    if (this.training) noGrad(() => this.num_batches_tracked.add_(1));
    return F.batchNorm(x, this.running_mean, this.running_var, this.weight, this.bias, this.training, this.momentum, this.eps);
  }
}

export class Conv2d extends Module implements TensorModule {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number | [number, number],
    readonly options: F.ConvOptions & { bias?: boolean } = {}) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const groups = options.groups ?? 1;
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, kh, kw]));
    kaimingUniform_(this.weight, Math.sqrt(5));
    this.bias = options.bias ?? true ? this.registerParameter('bias', empty([outChannels])) : null;
    if (this.bias) {
      const bound = 1 / Math.sqrt(fans(this.weight).fanIn);
      uniform_(this.bias, -bound, bound);
    }
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.options);
  }
}

export class LayerNorm extends Module implements TensorModule {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly eps = 1e-5, elementwiseAffine = true) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    this.weight = elementwiseAffine ? this.registerParameter('weight', ones(this.normalizedShape)) : null;
    this.bias = elementwiseAffine ? this.registerParameter('bias', zeros(this.normalizedShape)) : null;
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

export class GroupNorm extends Module implements TensorModule {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5, affine = true) {
    super();
    this.weight = affine ? this.registerParameter('weight', ones([numChannels])) : null;
    this.bias = affine ? this.registerParameter('bias', zeros([numChannels])) : null;
  }
  forward(x: Tensor): Tensor {
    return F.groupNorm(x, this.numGroups, this.weight, this.bias, this.eps);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
    super();
    this.weight = this.registerParameter('weight', empty([numEmbeddings, embeddingDim]));
    normal_(this.weight);
  }
  forward(ids: Tensor): Tensor {
    return F.embedding(ids, this.weight);
  }
}

export class GELU extends Module implements TensorModule {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.gelu(x, this.approximate);
  }
}

export class SiLU extends Module implements TensorModule {
  forward(x: Tensor): Tensor {
    return F.silu(x);
  }
}

export class ReLU extends Module implements TensorModule {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

export class Identity extends Module implements TensorModule {
  forward(x: Tensor): Tensor {
    return x.clone();
  }
}

export class Dropout extends Module implements TensorModule {
  constructor(readonly p = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
}

/** Children named '0', '1', ... as nn.ModuleList. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  constructor(modules: M[] = []) {
    super();
    for (const m of modules) this.append(m);
  }
  append(m: M): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    return this.items[i];
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** Applies its children in order, as nn.Sequential (children named '0', '1', ...). */
export class Sequential extends ModuleList<TensorModule> implements TensorModule {
  constructor(...modules: TensorModule[]) {
    super(modules);
  }
  forward(x: Tensor): Tensor {
    let out = x;
    for (const m of this.items) {
      const next = m.forward(out);
      if (out !== x) out.dispose();
      out = next;
    }
    return out === x ? x.clone() : out;
  }
}
