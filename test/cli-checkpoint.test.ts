// Checkpoint loading is the same in every command: a .pt with an unsupported pickle global is
// refused with a message naming the global and --skip-unknown, finetune's --ckpt included.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { test } from 'node:test';
import { difftune } from './helpers/difftune-cli';
import { tempDir, writePretrained, writeTargetFolder } from './helpers/train-fixture';

const HOSTILE = path.join(__dirname, '..', '..', 'test', 'fixtures', 'pt', 'hostile_torch_save_system.pt');
const dir = tempDir('cli-checkpoint');
const config = path.join(dir, 'model.json');
writePretrained(path.join(dir, 'model.safetensors'));
writeTargetFolder(path.join(dir, 'target'), 4);
const refused = /hostile_torch_save_system\.pt: .*pickle global 'posix\.system' is not allowed.*--skip-unknown/;

test('sample, bank, finetune, gate and forgetting refuse a checkpoint with an unsupported global, naming it and --skip-unknown', () => {
  const runs = {
    sample: ['sample', '--ckpt', HOSTILE, '--config', config, '--out', path.join(dir, 's.png')],
    bank: ['bank', '--ckpt', HOSTILE, '--config', config, '--out', path.join(dir, 'bank'), '--n', '2'],
    finetune: ['finetune', '--method', 'full', '--ckpt', HOSTILE, '--model-config', config, '--data', path.join(dir, 'target'), '--out', path.join(dir, 'run')],
    gate: ['gate', '--ckpt', HOSTILE, '--config', config, '--data', path.join(dir, 'target')],
    forgetting: ['forgetting', '--metric', 'loss', '--pretrained', HOSTILE, '--pretrained-config', config, '--finetuned', path.join(dir, 'model.safetensors'),
      '--dataset', path.join(dir, 'target'), '--out', path.join(dir, 'forgetting')],
  };
  for (const [name, argv] of Object.entries(runs)) {
    const r = difftune(argv, { ok: false });
    assert.match(r.stderr, refused, name);
    // With the flag the global becomes a placeholder: reading goes on, to find the file holds no state dict.
    const skipped = difftune([...argv, '--skip-unknown'], { ok: false });
    assert.match(skipped.stderr, /no state dict found/, `${name} --skip-unknown`);
  }
});
