// Parameter initialisers (torch.nn.init), in place and without recording gradients.
import { noGrad } from '../autograd';
import { Generator } from '../random';
import { Tensor } from '../tensor';

/** fan_in and fan_out as torch.nn.init computes them (dims 1 and 0 times the receptive field). */
export function fans(t: Tensor): { fanIn: number; fanOut: number } {
  const s = t.shape;
  if (s.length < 2) throw new Error(`fan in/out need a tensor with at least 2 dims, got [${s}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: s[1] * receptive, fanOut: s[0] * receptive };
}

let skipping = 0;

/**
 * Builds modules without drawing their random initial weights (uniform_, normal_ and the
 * initialisers built on them do nothing inside fn; the tensors hold whatever memory had): for
 * models whose weights are loaded next (SD1.5's UNet is 860M values, ~12 s to draw on 2 cores).
 */
export function skipInit<T>(fn: () => T): T {
  skipping++;
  try {
    return fn();
  } finally {
    skipping--;
  }
}

export function uniform_(t: Tensor, low = 0, high = 1, generator?: Generator): Tensor {
  if (skipping) return t;
  return noGrad(() => t.uniform_(low, high, generator));
}

export function normal_(t: Tensor, mean = 0, std = 1, generator?: Generator): Tensor {
  if (skipping) return t;
  return noGrad(() => t.normal_(mean, std, generator));
}

export function constant_(t: Tensor, value: number): Tensor {
  return noGrad(() => t.fill_(value));
}

export function zeros_(t: Tensor): Tensor {
  return noGrad(() => t.zero_());
}

export function xavierUniform_(t: Tensor, gain = 1, generator?: Generator): Tensor {
  const { fanIn, fanOut } = fans(t);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -bound, bound, generator);
}

/** kaiming_uniform_ with leaky_relu gain; a = sqrt(5) is nn.Linear/Conv2d's default weight init. */
export function kaimingUniform_(t: Tensor, a = 0, generator?: Generator): Tensor {
  const { fanIn } = fans(t);
  const gain = Math.sqrt(2 / (1 + a * a));
  const bound = gain * Math.sqrt(3 / fanIn);
  return uniform_(t, -bound, bound, generator);
}
