// Free functions over several tensors (torch.cat, torch.where, ...).
import { aten } from './aten';
import { Handle } from './native';
import { Scalar, Tensor } from './tensor';

const op = {
  cat: aten('cat'), stack: aten('stack'), where: aten('where.self'), whereSO: aten('where.ScalarOther'),
  whereSS: aten('where.ScalarSelf'), whereS: aten('where.Scalar'), linear: aten('linear'),
  einsum: aten('einsum'), broadcastTensors: aten('broadcast_tensors'),
};

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return new Tensor(op.cat(tensors.map((t) => t.h), dim));
}

export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return new Tensor(op.stack(tensors.map((t) => t.h), dim));
}

/** Elementwise choice: a where cond is true, else b. */
export function where(cond: Tensor, a: Tensor | Scalar, b: Tensor | Scalar): Tensor {
  if (typeof a === 'object' && typeof b === 'object') return new Tensor(op.where(cond.h, a.h, b.h));
  if (typeof a === 'object') return new Tensor(op.whereSO(cond.h, a.h, b));
  if (typeof b === 'object') return new Tensor(op.whereSS(cond.h, a, b.h));
  return new Tensor(op.whereS(cond.h, a, b));
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.matmul(b);
}

export function einsum(equation: string, ...operands: Tensor[]): Tensor {
  return new Tensor(op.einsum(equation, operands.map((t) => t.h), null));
}

export function broadcastTensors(...tensors: Tensor[]): Tensor[] {
  return (op.broadcastTensors(tensors.map((t) => t.h)) as Handle[]).map((h) => new Tensor(h));
}
