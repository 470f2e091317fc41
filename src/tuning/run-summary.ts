// The few lines a run prints about itself at the start; the whole resolved config (about 90
// lines) goes to RUN/config.json instead of the terminal.
import * as path from 'path';
import { TrainConfig, usesBank } from './config';
import { learningRate } from './setup';

/** What a run trains, on what, for how long and where, in a few lines. */
export function runSummary(c: TrainConfig): string {
  const o = c.optim;
  const model = c.model.ckpt ?? `${c.model.name ?? c.model.config} from scratch`;
  const data = `${c.data.target}${c.data.split === 'train' ? ':train' : ''}${usesBank(c.method) ? `, bank ${c.data.bank}` : ''}`;
  const lr = `lr ${learningRate(c)}${o.schedule !== 'constant' ? ` ${o.schedule}` : ''}${o.warmupSteps ? `, ${o.warmupSteps} warm-up` : ''}`;
  const peft = c.peft.method !== 'none' ? `, peft ${c.peft.method}` : '';
  return [
    `${c.method}${peft}: ${model} on ${data}`,
    `  ${c.run.steps} steps, batch ${o.batchSize}${o.accumulate > 1 ? ` x ${o.accumulate}` : ''}, ${lr}, EMA ${c.ema.decay}, ` +
      `seed ${c.run.seed}, ${c.run.precision} on ${c.run.device}`,
    `  run folder ${c.run.out} (the full config: ${path.join(c.run.out, 'config.json')}; --print-config shows it without training)`,
  ].join('\n');
}
