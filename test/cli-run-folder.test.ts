// finetune's run folder is checked before the data and model load: --resume needs checkpoints to
// resume from, and --out must be writable (under /proc it must fail, not spin in mkdir).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { difftune } from './helpers/difftune-cli';
import { tempDir, writePretrained, writeTargetFolder } from './helpers/train-fixture';

const dir = tempDir('cli-run-folder');
const ckpt = path.join(dir, 'source.safetensors');
writePretrained(ckpt);
writeTargetFolder(path.join(dir, 'target'), 4);
const finetune = (...args: string[]) => difftune(['finetune', '--method', 'full', '--ckpt', ckpt, '--data', path.join(dir, 'target'),
  '--steps', '2', '--batch', '4', ...args], { ok: false, timeoutMs: 60_000 });

test('finetune --resume with a run folder that holds no checkpoints fails instead of starting at step 0', () => {
  const typo = path.join(dir, 'rnu');
  const r = finetune('--out', typo, '--resume');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--resume: .*rnu holds no checkpoints to resume from \(no such folder\)/);
  assert.ok(!fs.existsSync(path.join(typo, 'log.jsonl')), 'nothing trained');
});

test('finetune --out that cannot be written fails before training, also under /proc', () => {
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, '');
  assert.match(finetune('--out', path.join(file, 'run')).stderr, /--out .*a-file\/run: cannot write there \(ENOTDIR/);
  assert.match(finetune('--out', '/proc/difftune-test/run').stderr, /--out \/proc\/difftune-test\/run: cannot write there/);
});

test('plan estimates a diff-tuning run without a bank (replay items cost what target ones do)', () => {
  const r = difftune(['plan', '--ckpt', ckpt, '--data', path.join(dir, 'target'), '--batch', '8'], { timeoutMs: 60_000 });
  assert.match(r.stdout, /AdamW moments/);
  assert.ok(!fs.existsSync(path.join(dir, 'runs')), 'plan makes no run folder');
});

test('bank, eval, ewc and export check --out before their work, also under /proc', () => {
  const model = path.join(dir, 'source.safetensors');
  const proc = (args: string[]) => difftune(args, { ok: false, timeoutMs: 60_000 }).stderr;
  assert.match(proc(['bank', '--ckpt', model, '--out', '/proc/difftune-test/bank', '--n', '2']), /--out \/proc\/difftune-test\/bank: cannot write there/);
  assert.match(proc(['eval', '--samples', path.join(dir, 'target'), '--ref', path.join(dir, 'target'), '--out', '/proc/difftune-test/m.json']),
    /--out \/proc\/difftune-test: cannot write there/);
  assert.match(proc(['ewc', '--pretrained', model, '--finetuned', model, '--bank', dir, '--out', '/proc/difftune-test/e.json']),
    /--out \/proc\/difftune-test: cannot write there/);
  assert.match(proc(['export', '--checkpoint', model, '--out', '/proc/difftune-test/x.safetensors']), /--out \/proc\/difftune-test: cannot write there/);
});
