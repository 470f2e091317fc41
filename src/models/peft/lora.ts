// LoRA (Hu et al. 2021) for a linear layer: y = W x + b + (alpha / r) · B A x, with W and b frozen
// and only the low-rank factors A [r, in] and B [out, r] trained. Initialised as the peft library
// does (A kaiming-uniform with a = sqrt(5), B zeros), so the adapted layer equals the base at step 0.
import * as torch from '../../torch';
import { Tensor } from '../../torch';

const { nn, F } = torch;

export class LoRALinear extends nn.Module {
  /** The base layer's own tensors under their own names, so official state dicts still load. */
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly lora_A: Tensor;
  readonly lora_B: Tensor;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** alpha / rank, the factor on the low-rank update. */
  readonly scaling: number;

  constructor(readonly base: torch.nn.Linear, readonly rank: number, readonly alpha: number = rank) {
    super();
    if (!Number.isInteger(rank) || rank <= 0) throw new Error(`LoRA: rank must be a positive integer, got ${rank}`);
    if (!(Number.isFinite(alpha) && alpha > 0)) throw new Error(`LoRA: alpha must be a positive number, got ${alpha}`);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    this.scaling = alpha / rank;
    this.weight = this.registerParameter('weight', base.weight, base.weight.requiresGrad);
    this.bias = base.bias ? this.registerParameter('bias', base.bias, base.bias.requiresGrad) : null;
    const where = { dtype: base.weight.dtype, device: base.weight.device };
    this.lora_A = this.registerParameter('lora_A', torch.empty([rank, this.inFeatures], where));
    nn.init.kaimingUniform_(this.lora_A, Math.sqrt(5));
    this.lora_B = this.registerParameter('lora_B', torch.zeros([this.outFeatures, rank], where));
  }

  forward(x: Tensor): Tensor {
    return torch.scope(() => F.linear(x, this.weight, this.bias)
      .add(F.linear(F.linear(x, this.lora_A), this.lora_B), this.scaling));
  }

  /**
   * Folds the update into the base weight (W += scaling · B A, in place) and returns the base
   * layer, which holds that same weight tensor; the factors are freed.
   */
  merge(): torch.nn.Linear {
    torch.noGrad(() => torch.scope(() => {
      this.weight.add_(this.lora_B.mm(this.lora_A), this.scaling);
    }));
    this.lora_A.dispose();
    this.lora_B.dispose();
    return this.base;
  }
}
