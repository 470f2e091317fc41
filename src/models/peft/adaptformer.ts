// AdaptFormer (Chen et al. 2022): a bottleneck adapter in parallel with a block's MLP,
// mlp'(x) = mlp(x) + s · up(ReLU(down(x))). The up projection starts at zero (AdaptFormer's "lora"
// init), so the adapted model equals the base at step 0; fc1/fc2 keep their names and stay frozen.
import * as torch from '../../torch';
import { Tensor } from '../../torch';
import { Mlp } from '../dit';

const { nn } = torch;

/** down_proj: dim -> bottleneck, ReLU, up_proj: bottleneck -> dim, output times `scale`. */
export class BottleneckAdapter extends nn.Module {
  readonly down_proj: torch.nn.Linear;
  readonly up_proj: torch.nn.Linear;

  constructor(dim: number, bottleneck: number, readonly scale: number, where: { dtype: torch.DType; device: torch.Device }) {
    super();
    if (!Number.isInteger(bottleneck) || bottleneck <= 0) throw new Error(`AdaptFormer: adapterDim must be a positive integer, got ${bottleneck}`);
    if (!Number.isFinite(scale)) throw new Error(`AdaptFormer: adapterScale must be a finite number, got ${scale}`);
    // nn.Linear's default weight init is already kaiming-uniform(a = sqrt(5)), as AdaptFormer's down_proj.
    this.down_proj = this.registerModule('down_proj', new nn.Linear(dim, bottleneck, true).to(where));
    this.up_proj = this.registerModule('up_proj', new nn.Linear(bottleneck, dim, true).to(where));
    nn.init.zeros_(this.down_proj.bias!);
    nn.init.zeros_(this.up_proj.weight);
    nn.init.zeros_(this.up_proj.bias!);
  }

  forward(x: Tensor): Tensor {
    return torch.scope(() => this.up_proj.forward(this.down_proj.forward(x).relu()).mul(this.scale));
  }
}

/** A DiT Mlp with a parallel adapter; fc1, act and fc2 are the base Mlp's own modules. */
export class AdaptFormerMlp extends nn.Module {
  readonly fc1: torch.nn.Linear;
  readonly act: torch.nn.GELU;
  readonly fc2: torch.nn.Linear;
  readonly adapter: BottleneckAdapter;

  constructor(readonly base: Mlp, adapterDim: number, scale: number) {
    super();
    this.fc1 = this.registerModule('fc1', base.fc1);
    this.act = this.registerModule('act', base.act);
    this.fc2 = this.registerModule('fc2', base.fc2);
    const w = base.fc1.weight;
    this.adapter = this.registerModule('adapter',
      new BottleneckAdapter(base.fc1.inFeatures, adapterDim, scale, { dtype: w.dtype, device: w.device }));
  }

  forward(x: Tensor): Tensor {
    return torch.scope(() => this.base.forward(x).add(this.adapter.forward(x)));
  }
}
