import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';

const fixtures = path.join(__dirname, '..', '..', 'test', 'fixtures', 'pt');
const expected = JSON.parse(fs.readFileSync(path.join(fixtures, 'expected.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-ser-'));

test('every dtype survives a safetensors round trip through tensors, bit for bit', () => {
  torch.manualSeed(1);
  const base = torch.randn([3, 5]);
  const tensors = new Map<string, torch.Tensor>([
    ['f32', base], ['f64', base.double()], ['f16', base.half()], ['bf16', base.bfloat16()],
    ['i64', torch.randint(-9, 9, [4])], ['i32', torch.randint(-9, 9, [4], { dtype: 'int32' })],
    ['u8', torch.randint(0, 255, [2, 2], { dtype: 'uint8' })], ['b', base.gt(0)], ['scalar', torch.scalar(2.5)],
    ['empty', torch.zeros([0, 3])], ['strided', base.t()],
  ]);
  const file = path.join(tmp, 'all.safetensors');
  torch.saveSafetensors(file, tensors, { note: 'hello' });
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.includes('.tmp')), [], 'no temp file left behind');
  const back = torch.loadSafetensors(file);
  assert.deepEqual([...back.keys()].sort(), [...tensors.keys()].sort());
  for (const [k, t] of tensors) {
    const b = back.get(k)!;
    assert.equal(b.dtype, t.dtype, k);
    assert.deepEqual(b.shape, t.shape, k);
    assert.deepEqual(b.bytes(), t.contiguous().bytes(), k);
  }
  assert.equal(torch.safetensorsMetadata(file).note, 'hello');
});

test('loadCheckpoint reads a plain torch.save(state_dict) with exact values', () => {
  const { stateDict, warnings } = torch.loadCheckpoint(path.join(fixtures, 'state_dict.pt'));
  assert.deepEqual(warnings, []);
  for (const [name, ref] of Object.entries(expected['state_dict.pt'].tensors) as [string, { dtype: string; shape: number[]; hex: string }][]) {
    const t = stateDict.get(name);
    assert.ok(t, `missing ${name}`);
    assert.equal(t.dtype, ref.dtype, name);
    assert.deepEqual(t.shape, ref.shape, name);
    assert.equal(Buffer.from(t.bytes()).toString('hex'), ref.hex, name);
  }
});

test('loadCheckpoint picks EMA or model weights out of a training checkpoint, skipping args with a warning', () => {
  const file = path.join(fixtures, 'train_ckpt.pt');
  assert.throws(() => torch.loadCheckpoint(file), /argparse\.Namespace/);
  const ema = torch.loadCheckpoint(file, { skipUnknown: true });
  assert.ok(ema.warnings.some((w) => w.includes('argparse.Namespace')), ema.warnings.join('\n'));
  const model = torch.loadCheckpoint(file, { skipUnknown: true, key: 'model' });
  assert.deepEqual([...ema.stateDict.keys()], [...model.stateDict.keys()]);
  assert.ok(ema.stateDict.size > 0);
});

test('a state dict loads strictly into a module, and mismatches are listed', () => {
  class Net extends torch.nn.Module {
    readonly fc = this.registerModule('fc', new torch.nn.Linear(3, 2));
  }
  const net = new Net();
  const good = new Map([['fc.weight', torch.ones([2, 3])], ['fc.bias', torch.zeros([2])]]);
  net.loadStateDict(good);
  assert.deepEqual(net.fc.weight.toArray(), [1, 1, 1, 1, 1, 1]);
  const bad = new Map([['fc.weight', torch.ones([3, 3])], ['fc.extra', torch.zeros([1])]]);
  assert.throws(() => net.loadStateDict(bad, { what: 'ckpt.pt' }),
    (e: Error) => /missing keys \(1\): fc\.bias/.test(e.message) && /unexpected keys \(1\): fc\.extra/.test(e.message)
      && /fc\.weight: model has \[2,3\], ckpt\.pt has \[3,3\]/.test(e.message));
  const report = net.loadStateDict(bad, { strict: false });
  assert.deepEqual(report.missing, ['fc.bias']);
  assert.deepEqual(net.fc.weight.toArray(), [1, 1, 1, 1, 1, 1], 'mis-shaped tensor left untouched');
});

test('optimizer state saved to a file resumes bit for bit', () => {
  const run = (steps: number, resumeFrom?: string) => {
    torch.manualSeed(7);
    const net = new torch.nn.Linear(4, 4);
    const x = torch.randn([8, 4]);
    const opt = new torch.optim.AdamW(net.parameters(), { lr: 0.01 });
    if (resumeFrom) {
      net.loadStateDict(torch.loadSafetensors(`${resumeFrom}.model.safetensors`));
      opt.loadStateDict(torch.loadOptimizerState(`${resumeFrom}.opt.safetensors`));
    }
    for (let i = 0; i < steps; i++) {
      torch.scope(() => {
        opt.zeroGrad();
        net.forward(x).square().mean().backward();
        opt.step();
      });
    }
    return { net, opt };
  };
  const straight = run(10);
  const first = run(4);
  const prefix = path.join(tmp, 'resume');
  torch.saveSafetensors(`${prefix}.model.safetensors`, first.net.stateDict());
  torch.saveOptimizerState(`${prefix}.opt.safetensors`, first.opt.stateDict());
  const resumed = run(6, prefix);
  assert.deepEqual(resumed.net.weight.toArray(), straight.net.weight.toArray());
  assert.deepEqual(resumed.net.bias!.toArray(), straight.net.bias!.toArray());
});

test('hostile pickles are refused and nothing runs', () => {
  for (const f of ['hostile_os_system_zip.pt', 'hostile_eval.pt', 'hostile_torch_save_system.pt']) {
    assert.throws(() => torch.loadCheckpoint(path.join(fixtures, f)), /(os|posix|builtins|nt)\.(system|eval)|not allowed|refus/i, f);
  }
});
