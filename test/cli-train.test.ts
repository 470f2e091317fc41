// The commands end to end, as a user runs them: bank -> finetune (--resume) -> sample; pretrain; plan.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readJsonl } from '../src/report/jsonl';
import { loadDiT } from '../src/models/dit-io';
import * as torch from '../src/torch';
import { difftune } from './helpers/difftune-cli';
import { tempDir, writePretrained, writeTargetFolder } from './helpers/train-fixture';

test('bank, finetune (interrupted by --steps, then --resume), sample', () => {
  const dir = tempDir('cli');
  const ckpt = path.join(dir, 'source.safetensors');
  writePretrained(ckpt);
  const target = path.join(dir, 'target');
  writeTargetFolder(target);
  const bank = path.join(dir, 'bank');
  difftune(['bank', '--ckpt', ckpt, '--out', bank, '--n', '12', '--sampler', 'ddim', '--steps', '4', '--batch', '6', '--cfg', '1']);
  assert.equal(JSON.parse(fs.readFileSync(path.join(bank, 'manifest.json'), 'utf8')).count, 12);

  const run = path.join(dir, 'run');
  const common = ['--ckpt', ckpt, '--data', target, '--bank', bank, '--out', run, '--batch', '10', '--lr', '1e-3',
    '--log-every', '2', '--checkpoint-every', '4', '--preview-every', '0', '--set', 'ema.decay=0.9'];
  const first = difftune(['finetune', ...common, '--steps', '4']);
  // A short summary, not the whole config (that is in config.json).
  assert.match(first.stdout, /^diff-tuning: .*source\.safetensors on .*target, bank .*bank\n  4 steps, batch 10, lr 0\.001, EMA 0\.9/m);
  assert.doesNotMatch(first.stdout, /"objective"/);
  assert.match(first.stdout, /memory plan/);
  const saved = JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8'));
  assert.equal(saved.method, 'diff-tuning');
  assert.equal(saved.ema.decay, 0.9);
  // A second start without --resume must not mix runs.
  const clash = difftune(['finetune', ...common, '--steps', '8'], { ok: false });
  assert.match(clash.stderr, /already holds checkpoints: pass --resume/);
  // A resume under another objective is refused, naming the difference.
  const other = difftune(['finetune', ...common, '--steps', '8', '--tau', '2', '--resume'], { ok: false });
  assert.match(other.stderr, /another configuration \(objective.tau: 1 -> 2\)/);
  const second = difftune(['finetune', ...common, '--steps', '8', '--resume']);
  assert.match(second.stdout, /resumed from .*step-00000004/);
  const log = readJsonl(path.join(run, 'log.jsonl'));
  assert.deepEqual(log.map((r) => r.step), [2, 4, 6, 8]);

  // export: the checkpoint's EMA weights are the run's own exported model; --weights model differs.
  const ckpt8 = path.join(run, 'checkpoints', 'step-00000008.safetensors');
  difftune(['export', '--checkpoint', ckpt8, '--out', path.join(dir, 'exp', 'ema.safetensors')]);
  difftune(['export', '--checkpoint', ckpt8, '--weights', 'model', '--out', path.join(dir, 'exp', 'raw.safetensors')]);
  const runModel = torch.loadSafetensors(path.join(run, 'model.safetensors'));
  const ema = torch.loadSafetensors(path.join(dir, 'exp', 'ema.safetensors'));
  const raw = torch.loadSafetensors(path.join(dir, 'exp', 'raw.safetensors'));
  for (const [k, t] of runModel) assert.ok(t.equal(ema.get(k)!), `export --weights ema: ${k}`);
  assert.ok([...runModel].some(([k, t]) => !t.equal(raw.get(k)!)), 'the raw weights are not the EMA');
  // --dtype float16: half the bytes, pos_embed left out (recomputed on load), the same function to fp16 rounding.
  difftune(['export', '--checkpoint', ckpt8, '--dtype', 'float16', '--out', path.join(dir, 'exp', 'half.safetensors')]);
  const half = torch.loadSafetensors(path.join(dir, 'exp', 'half.safetensors'));
  assert.ok(!half.has('pos_embed') && [...half.values()].every((t) => t.dtype === 'float16'));
  const a = loadDiT(path.join(dir, 'exp', 'ema.safetensors')).model.eval();
  const b = loadDiT(path.join(dir, 'exp', 'half.safetensors')).model.eval();
  assert.ok(a.pos_embed.equal(b.pos_embed), 'pos_embed recomputed exactly');
  const x = torch.randn([2, 3, 8, 8]);
  const t = torch.tensor([5, 800], { dtype: 'int64' });
  const y = torch.tensor([0, 1], { dtype: 'int64' });
  const diff = torch.noGrad(() => a.forward(x, t, y).sub(b.forward(x, t, y)).abs().max().item());
  assert.ok(diff > 0 && diff < 1e-2, `float16 export changes the output by ${diff}`);

  const png = path.join(dir, 'samples.png');
  difftune(['sample', '--ckpt', path.join(run, 'model.safetensors'), '--classes', '0,1', '--sampler', 'ddim', '--steps', '5', '--out', png]);
  assert.deepEqual([...fs.readFileSync(png).subarray(1, 4)], [0x50, 0x4e, 0x47]);
});

test('pretrain from scratch, plan, and clear errors for a missing folder or bank', () => {
  const dir = tempDir('cli');
  const target = path.join(dir, 'target');
  writeTargetFolder(target, 8);
  const run = path.join(dir, 'pre');
  difftune(['pretrain', '--model', 'DiT-S/2', '--set', 'model.hiddenSize=32', '--set', 'model.depth=2', '--set', 'model.numHeads=2',
    '--data', target, '--resolution', '8', '--out', run, '--steps', '3', '--batch', '8', '--preview-every', '0']);
  const cfg = JSON.parse(fs.readFileSync(path.join(run, 'model.json'), 'utf8'));
  assert.equal(cfg.model_args.hidden_size, 32);
  assert.equal(cfg.model_args.num_classes, 2, 'one class per target subfolder');

  const plan = difftune(['plan', '--ckpt', path.join(run, 'model.safetensors'), '--data', target, '--method', 'full', '--peft', 'lora']);
  assert.match(plan.stdout, /AdamW moments/);
  assert.ok(!fs.existsSync(path.join(dir, 'runs')), 'plan trains nothing');

  const missing = difftune(['finetune', '--ckpt', path.join(run, 'model.safetensors'), '--data', path.join(dir, 'nope'), '--method', 'full', '--out', path.join(dir, 'x')], { ok: false });
  assert.match(missing.stderr, /nope/);
  const noBank = difftune(['finetune', '--ckpt', path.join(run, 'model.safetensors'), '--data', target, '--out', path.join(dir, 'y')], { ok: false });
  assert.match(noBank.stderr, /'data.bank' is required for method "diff-tuning"/);
});
