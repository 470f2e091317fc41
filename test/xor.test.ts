import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';

class MLP extends torch.nn.Module {
  readonly fc1 = this.registerModule('fc1', new torch.nn.Linear(2, 8));
  readonly fc2 = this.registerModule('fc2', new torch.nn.Linear(8, 1));
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(x).tanh());
  }
}

test('a two-layer MLP learns XOR through the public API', () => {
  torch.manualSeed(0);
  const model = new MLP();
  assert.deepEqual(model.namedParameters().map(([k]) => k), ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
  const x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]);
  const y = torch.tensor([[0], [1], [1], [0]]);
  const opt = new torch.optim.AdamW(model.parameters(), { lr: 0.05, weightDecay: 0 });
  let first = 0;
  let last = 0;
  for (let step = 0; step < 500; step++) {
    last = torch.scope(() => {
      opt.zeroGrad();
      const loss = torch.F.mseLoss(model.forward(x), y);
      loss.backward();
      opt.step();
      return loss.item();
    });
    if (step === 0) first = last;
  }
  assert.ok(first > 0.1, `initial loss ${first} should be far from solved`);
  assert.ok(last < 1e-3, `final loss ${last} should be near zero`);
  const pred = torch.noGrad(() => model.forward(x)).toArray().map((v) => (v > 0.5 ? 1 : 0));
  assert.deepEqual(pred, [0, 1, 1, 0]);
});
