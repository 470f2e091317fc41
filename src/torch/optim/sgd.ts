// SGD with momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD.
import { Tensor } from '../tensor';
import { Optimizer } from './optimizer';

export interface SGDOptions {
  [k: string]: number | boolean | number[];
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ConstructorParameters<typeof Optimizer<SGDOptions>>[0], o: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...o } as SGDOptions);
    if (o.nesterov && (!o.momentum || o.dampening)) throw new Error('SGD: Nesterov momentum needs momentum > 0 and dampening 0');
  }

  protected update(p: Tensor, grad: Tensor, st: { step: number; tensors: Map<string, Tensor> }, o: SGDOptions): void {
    let d = o.weightDecay !== 0 ? grad.add(p, o.weightDecay) : grad;
    if (o.momentum !== 0) {
      let buf = st.tensors.get('momentum_buffer');
      if (!buf) {
        buf = d.clone().detach().keep();
        st.tensors.set('momentum_buffer', buf);
      } else {
        buf.mul_(o.momentum).add_(d, 1 - o.dampening);
      }
      const next = o.nesterov ? d.add(buf, o.momentum) : buf;
      if (d !== grad) d.dispose();
      d = next;
    }
    p.add_(d, -o.lr);
    if (d !== grad && d !== st.tensors.get('momentum_buffer')) d.dispose();
  }
}
