import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { Ema } from '../src/tuning/ema';

test('EMA follows decay * shadow + (1 - decay) * param, for trainable parameters only', () => {
  const net = new torch.nn.Linear(2, 1);
  net.bias!.requiresGrad = false;
  torch.noGrad(() => { net.weight.fill_(1); net.bias!.fill_(5); });
  const ema = new Ema(net, 0.9);
  assert.deepEqual([...ema.shadow.keys()], ['weight']);
  torch.noGrad(() => net.weight.fill_(3));
  ema.update(net);
  assert.deepEqual(ema.shadow.get('weight')!.toArray().map((v) => +v.toFixed(6)), [1.2, 1.2]);
  const sd = ema.stateDict(net);
  assert.deepEqual(sd.get('bias')!.toArray(), [5]);
  assert.equal(sd.get('weight'), ema.shadow.get('weight'));
});
