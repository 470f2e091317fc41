// Without a terminal (CI, nohup, a log file) a run still reports progress: plain lines with the
// step, rate, ETA and loss, every run.progressEvery seconds.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { test } from 'node:test';
import { difftune } from './helpers/difftune-cli';
import { tempDir, writePretrained, writeTargetFolder } from './helpers/train-fixture';

test('finetune with stderr not a terminal prints plain progress lines: step, rate, ETA, loss', () => {
  const dir = tempDir('cli-progress');
  const ckpt = path.join(dir, 'source.safetensors');
  writePretrained(ckpt);
  writeTargetFolder(path.join(dir, 'target'), 4);
  // spawnSync pipes stderr: not a TTY. Every update prints with --progress-every 0.
  const r = difftune(['finetune', '--method', 'full', '--ckpt', ckpt, '--data', path.join(dir, 'target'), '--out', path.join(dir, 'run'),
    '--steps', '3', '--batch', '4', '--preview-every', '0', '--progress-every', '0'], { timeoutMs: 120_000 });
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('train '));
  assert.ok(lines.length >= 3, r.stderr);
  assert.match(lines[0], /^train \[[#.]+\] 1\/3 33\.3%  \S+ (it\/s|s\/it)  ETA \S+  loss \d\.\d{4}$/);
  assert.ok(!r.stderr.includes('\r'), 'no carriage returns in a log');
});
