// bench:scale's plumbing on the CPU (the real rows need a CUDA GPU): the FLOP count it divides by
// (DiT-XL/2 at 256px is the paper's 118.6 G multiply-adds per forward), the argument rules, and a
// run of the toy model that ends with the ratio and MFU lines.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { ditForwardMacs, ditStepFlops, SCALE_MODELS } from '../bench/scale/configs';

test('DiT FLOPs: XL/2 at 256px is 118.6 G multiply-adds per forward, B/2 23.0 G; a training step is 6 x MACs x batch', () => {
  const xl = ditForwardMacs(SCALE_MODELS['DiT-XL/2'].config.model);
  const b2 = ditForwardMacs(SCALE_MODELS['DiT-B/2'].config.model);
  assert.ok(Math.abs(xl / 118.6e9 - 1) < 0.005, `XL/2: ${xl}`);
  assert.ok(Math.abs(b2 / 23.01e9 - 1) < 0.01, `B/2: ${b2}`);
  assert.equal(ditStepFlops(SCALE_MODELS['DiT-XL/2'].config), 6 * xl * 32);
});

test('bench:scale --device cpu runs the toy model on both sides and ends with the ratio and mfu lines', () => {
  const script = path.join(__dirname, '..', 'bench', 'scale', 'run.js');
  const r = spawnSync(process.execPath, [script, '--device', 'cpu', '--steps', '2', '--min-seconds', '0'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines.find((l) => l.includes('small-fp32 ts')) ?? '', /small-fp32 ts\s+[\d.]+ steps\/s/);
  assert.match(lines[lines.length - 2], /^ratio small-fp32 ([\d.]+|n\/a)$/);
  assert.match(lines[lines.length - 1], /^mfu small-fp32 ts [\d.]+ torch ([\d.]+|n\/a) \(measured float32 512 matmul [\d.]+ TFLOP\/s\)$/);
  const bad = spawnSync(process.execPath, [script, '--device', 'cpu', '--model', 'DiT-XL/2'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /too large for the CPU; use --model small/);
});
