// Building a Trainer on a fixture config, and comparing saved states, for the trainer tests.
import { strict as assert } from 'node:assert';
import * as torch from '../../src/torch';
import { Tensor } from '../../src/torch';
import { TrainConfig } from '../../src/tuning/config';
import { prepareInputs } from '../../src/tuning/setup';
import { Trainer, TrainerOptions } from '../../src/tuning/trainer';

/** A quiet trainer (no log lines, no progress bar) on c, seeded as the CLI seeds it. */
export async function makeTrainer(c: TrainConfig, o: TrainerOptions = {}): Promise<Trainer> {
  torch.manualSeed(c.run.seed);
  const inputs = await prepareInputs(c, () => {});
  return new Trainer(c, inputs, { log: () => {}, progress: false, ...o });
}

/** Same names, and every tensor bit-identical. */
export function stateEqual(a: Map<string, Tensor>, b: Map<string, Tensor>, what: string): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), `${what}: same names`);
  for (const [k, t] of a) assert.ok(torch.scope(() => t.equal(b.get(k)!)), `${what}: '${k}' differs`);
}
