// Gradient checkpointing of a chain of blocks x_{i+1} = block_i(x_i, c), in two phases. libtorch's
// C++ API has no checkpoint function, and autograd cannot call back into JS to recompute, so the
// recomputation runs after the caller's backward instead of inside it:
//   phase 1 (construction): the blocks run without a graph; only each block's input is kept. The
//     caller continues from `output` and `cond`, leaves that require grad, and calls loss.backward().
//   phase 2 (backward()): block i is recomputed from its saved input with a graph and
//     backpropagated with the gradient of its output; its input's gradient is the next block's
//     output gradient. The gradients of c add up on `cond`; at the end they, and the gradient of
//     the chain's input, flow into the graphs that made those (the embedders).
// Phase 2 replays the autocast mode of phase 1, so the recomputed activations equal the first ones.
// The blocks must be deterministic (no dropout): DiT's are, and its label dropout happens before c.
import * as torch from '../torch';
import { Tensor } from '../torch';

export interface ChainBlock {
  forward(x: Tensor, c: Tensor): Tensor;
}

export class CheckpointedChain {
  /** The last block's output as a leaf that requires grad: the caller's computation continues from it. */
  readonly output: Tensor;
  /** c as a leaf (requiring grad when c does): the caller uses it instead of c so all of c's gradient adds up here. */
  readonly cond: Tensor;
  /** inputs[i] is block i's input; inputs[0] shares the chain input's memory. */
  private readonly inputs: Tensor[] = [];
  private readonly deviceType: 'cuda' | 'cpu';
  private readonly autocast: { enabled: boolean; dtype: torch.DType };
  private finished = false;

  /**
   * Runs phase 1. Takes ownership of `input` and `c` (tensors with the graphs of what made them),
   * which are freed with the chain.
   */
  constructor(private readonly blocks: readonly ChainBlock[], private readonly input: Tensor, private readonly c: Tensor) {
    input.keep();
    c.keep();
    this.deviceType = input.device.startsWith('cuda') ? 'cuda' : 'cpu';
    this.autocast = torch.autocastState(this.deviceType);
    this.cond = c.detach().keep().requiresGrad_(c.requiresGrad);
    try {
      this.output = torch.noGrad(() => {
        let h = input.detach().keep();
        for (const block of blocks) {
          this.inputs.push(h);
          h = block.forward(h, this.cond).keep();
        }
        return h;
      }).requiresGrad_(true);
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Whether a backward reached `output`, i.e. phase 2 is due. */
  hasGradient(): boolean {
    if (this.finished) return false;
    const g = this.output.grad;
    g?.dispose();
    return g !== null;
  }

  /**
   * Phase 2, after the caller's backward: gradients of the blocks' parameters, then of the
   * embedders that made the chain input and c. Frees the chain; a chain no backward reached is
   * only freed. Calling it again does nothing.
   */
  backward(): void {
    if (this.finished) return;
    try {
      const g = this.output.grad;
      if (g) this.inAutocast(() => torch.enableGrad(() => this.backpropagate(g)));
    } finally {
      this.dispose();
    }
  }

  private backpropagate(outputGrad: Tensor): void {
    let g: Tensor | null = outputGrad;
    for (let i = this.blocks.length - 1; i >= 0 && g; i--) {
      const x = this.inputs[i];
      // Block 0's input needs a gradient only when the embedder before it trains.
      const wantInputGrad = i > 0 || this.input.requiresGrad;
      const gradOut: Tensor = g;
      const next = torch.scope(() => {
        x.requiresGrad_(wantInputGrad);
        const y = this.blocks[i].forward(x, this.cond);
        if (y.requiresGrad) torch.backward([y], [gradOut]);
        return wantInputGrad ? x.grad : null;
      });
      gradOut.dispose();
      x.dispose(); // this saved input is no longer needed: free it now
      g = next;
    }
    const outputs: Tensor[] = [];
    const grads: Tensor[] = [];
    if (g && this.input.requiresGrad) {
      outputs.push(this.input);
      grads.push(g);
    }
    const gc = this.c.requiresGrad ? this.cond.grad : null;
    if (gc) {
      outputs.push(this.c);
      grads.push(gc);
    }
    try {
      if (outputs.length) torch.backward(outputs, grads);
    } finally {
      g?.dispose();
      gc?.dispose();
    }
  }

  private inAutocast(fn: () => void): void {
    if (!this.autocast.enabled) return fn();
    torch.autocast(fn, { deviceType: this.deviceType, dtype: this.autocast.dtype });
  }

  /** Frees every tensor the chain holds (phase 2 is then impossible). */
  dispose(): void {
    this.finished = true;
    for (const t of this.inputs) t.dispose();
    this.output?.dispose();
    this.cond.dispose();
    this.input.dispose();
    this.c.dispose();
  }
}
