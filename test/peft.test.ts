import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as torch from '../src/torch';
import { Tensor } from '../src/torch';
import { DiT, DiTConfig } from '../src/models/dit';
import {
  adapterKeys, AdaptFormerMlp, applyPeft, loadBaseStateDict, loadPeftStateDict, LoRALinear, mergeLoRA,
  PEFT_DEFAULT_LR, PeftOptions, peftMethodOf, peftStateDict,
} from '../src/models/peft';

// A tiny DiT with DiffFit gammas in its first block (depth 2, hidden 32, 4 heads, MLP 128).
const CONFIG: Partial<DiTConfig> = {
  inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 4, numClasses: 10,
  learnSigma: true, useGamma: true, gammaDepth: 1,
};

/** Stand-in pretrained weights: every tensor random (so every gradient is non-zero), gammas near 1. */
function pretrainedWeights(config: Partial<DiTConfig> = CONFIG): Map<string, Tensor> {
  const gen = new torch.Generator('cpu', 1234);
  const model = new DiT(config, { initialize: false });
  const out = new Map<string, Tensor>();
  torch.noGrad(() => {
    for (const [name, p] of model.stateDict()) {
      const v = name === 'pos_embed' ? p.clone() : torch.randn(p.shape, { generator: gen }).mul(0.2).add(name.includes('gamma') ? 1 : 0);
      out.set(name, v.keep());
    }
  });
  return out;
}

const WEIGHTS = pretrainedWeights();

function pretrained(): DiT {
  const m = new DiT(CONFIG, { initialize: false });
  m.loadStateDict(WEIGHTS);
  return m.eval();
}

const inputs = (() => {
  const gen = new torch.Generator('cpu', 7);
  return {
    x: torch.randn([3, 4, 8, 8], { generator: gen }).keep(),
    t: torch.tensor([3, 500, 999], { dtype: 'int64' }).keep(),
    y: torch.tensor([0, 4, 10], { dtype: 'int64' }).keep(), // 10 = the null label
  };
})();

function run(m: DiT): Tensor {
  return torch.noGrad(() => m.forward(inputs.x, inputs.t, inputs.y)).keep();
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return torch.scope(() => a.sub(b).abs().max().item());
}

function maxAbs(a: Tensor): number {
  return torch.scope(() => a.abs().max().item());
}

/** A few AdamW steps on a loss over the whole output, the optimizer given every parameter. */
function train(m: DiT, steps: number, lr = 1e-2): void {
  const opt = new torch.optim.AdamW(m.parameters(), { lr, weightDecay: 0 });
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    torch.scope(() => m.forward(inputs.x, inputs.t, inputs.y).sub(0.3).square().mean()).backward();
    opt.step();
  }
}

// Expected names, written out from the DiT architecture (not from the code under test).
const blockBiases = (i: number): string[] => ['attn.qkv.bias', 'attn.proj.bias', 'mlp.fc1.bias', 'mlp.fc2.bias', 'adaLN_modulation.1.bias']
  .map((n) => `blocks.${i}.${n}`);
const BIASES = ['x_embedder.proj.bias', 't_embedder.mlp.0.bias', 't_embedder.mlp.2.bias', ...blockBiases(0), ...blockBiases(1),
  'final_layer.linear.bias', 'final_layer.adaLN_modulation.1.bias'];
const GAMMAS = ['blocks.0.gamma1', 'blocks.0.gamma2', 'blocks.0.attn.gamma1', 'blocks.0.attn.gamma2'];
const TABLE = 'y_embedder.embedding_table.weight';
const LORA_LAYERS = [0, 1].flatMap((i) => ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2'].map((l) => `blocks.${i}.${l}`));
const loraKeys = (layers: string[]): string[] => layers.flatMap((l) => [`${l}.lora_A`, `${l}.lora_B`]);
const ADAPTER_KEYS = [0, 1].flatMap((i) => ['down_proj.weight', 'down_proj.bias', 'up_proj.weight', 'up_proj.bias']
  .map((n) => `blocks.${i}.mlp.adapter.${n}`));

const sorted = (a: Iterable<string>): string[] => [...a].sort();

function requiresGradNames(m: DiT): string[] {
  return m.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
}

const CASES: { o: PeftOptions; expected: string[] }[] = [
  { o: { method: 'difffit' }, expected: [...BIASES, ...GAMMAS, TABLE] },
  { o: { method: 'difffit', trainLabelTable: false }, expected: [...BIASES, ...GAMMAS, TABLE] }, // always, as the code
  { o: { method: 'bitfit' }, expected: BIASES },
  { o: { method: 'bitfit', trainLabelTable: true }, expected: [...BIASES, TABLE] },
  { o: { method: 'lora' }, expected: loraKeys(LORA_LAYERS) },
  { o: { method: 'lora', loraTargets: ['qkv'], trainLabelTable: true }, expected: [...loraKeys(['blocks.0.attn.qkv', 'blocks.1.attn.qkv']), TABLE] },
  { o: { method: 'adaptformer' }, expected: ADAPTER_KEYS },
];

test('each method trains exactly its parameters', () => {
  for (const { o, expected } of CASES) {
    const m = pretrained();
    const names = applyPeft(m, o);
    assert.deepEqual(sorted(names), sorted(expected), JSON.stringify(o));
    assert.deepEqual(sorted(requiresGradNames(m)), sorted(expected), `requiresGrad flags for ${JSON.stringify(o)}`);
    assert.equal(peftMethodOf(m), o.method);
  }
  const full = pretrained();
  const all = [...full.stateDict().keys()].filter((k) => k !== 'pos_embed');
  assert.equal(all.length, 35, 'the tiny DiT has 36 tensors');
  assert.deepEqual(sorted(applyPeft(full, { method: 'none' })), sorted(all));
});

test('adapter shapes follow rank and bottleneck, and base names stay as the official ones', () => {
  const m = pretrained();
  applyPeft(m, { method: 'lora', loraRank: 4 });
  const sd = m.stateDict();
  assert.deepEqual(sd.get('blocks.1.attn.qkv.lora_A')!.shape, [4, 32]);
  assert.deepEqual(sd.get('blocks.1.attn.qkv.lora_B')!.shape, [96, 4]);
  assert.deepEqual(sd.get('blocks.0.mlp.fc1.lora_A')!.shape, [4, 32]);
  assert.deepEqual(sd.get('blocks.0.mlp.fc2.lora_B')!.shape, [32, 4]);
  assert.deepEqual(sorted([...sd.keys()].filter((k) => !k.includes('lora_'))), sorted(WEIGHTS.keys()));
  assert.ok(m.blocks.at(0).attn.qkv instanceof LoRALinear, 'block.attn.qkv points at the adapter');

  const a = pretrained();
  applyPeft(a, { method: 'adaptformer', adapterDim: 16 });
  const asd = a.stateDict();
  assert.deepEqual(asd.get('blocks.0.mlp.adapter.down_proj.weight')!.shape, [16, 32]);
  assert.deepEqual(asd.get('blocks.0.mlp.adapter.up_proj.weight')!.shape, [32, 16]);
  assert.deepEqual(sorted([...asd.keys()].filter((k) => !k.includes('adapter'))), sorted(WEIGHTS.keys()));
  assert.deepEqual(sorted(adapterKeys(a)), sorted(ADAPTER_KEYS));

  for (const method of ['lora', 'adaptformer'] as const) {
    const d = pretrained().to('float64');
    applyPeft(d, { method });
    const sdd = d.stateDict();
    for (const k of adapterKeys(d)) assert.equal(sdd.get(k)!.dtype, 'float64', `${k} follows the model's dtype`);
  }
});

test('bad options get clear errors', () => {
  const plain = new DiT({ ...CONFIG, useGamma: false }, { initialize: false });
  assert.throws(() => applyPeft(plain, { method: 'difffit' }), /useGamma: true/);
  assert.throws(() => applyPeft(pretrained(), { method: 'lora', loraTargets: ['qkv', 'adaLN'] }), /unknown LoRA target 'adaLN'/);
  assert.throws(() => applyPeft(pretrained(), { method: 'lora', loraRank: 0 }), /rank must be a positive integer/);
  assert.throws(() => applyPeft(pretrained(), { method: 'prefix' as never }), /unknown method 'prefix'/);
  const twice = pretrained();
  applyPeft(twice, { method: 'lora' });
  assert.throws(() => applyPeft(twice, { method: 'adaptformer' }), /already carries adapters/);
  assert.throws(() => peftStateDict(pretrained()), /call applyPeft first/);
  assert.throws(() => mergeLoRA(pretrained()), /no LoRA layers/);
});

test('after a backward only trainable parameters have gradients, and AdamW changes only them', () => {
  for (const { o, expected } of CASES) {
    const m = pretrained();
    applyPeft(m, o);
    const before = new Map(m.stateDict());
    const snapshot = new Map([...before].map(([k, v]) => [k, torch.noGrad(() => v.clone()).keep()]));
    torch.scope(() => m.forward(inputs.x, inputs.t, inputs.y).square().mean()).backward();
    const trainable = new Set(expected);
    for (const [name, p] of m.namedParameters()) {
      assert.equal(p.grad !== null, trainable.has(name), `${JSON.stringify(o)}: gradient of ${name}`);
    }
    m.zeroGrad();
    train(m, 2);
    for (const [name, p] of m.stateDict()) {
      const changed = maxAbsDiff(p, snapshot.get(name)!) > 0;
      assert.equal(changed, trainable.has(name), `${JSON.stringify(o)}: ${name} ${changed ? 'changed' : 'unchanged'}`);
    }
    for (const t of snapshot.values()) t.dispose();
  }
});

test('a LoRA linear computes W x + b + (alpha / r) B A x and merges into W + (alpha / r) B A (float64)', () => {
  torch.manualSeed(3);
  const base = new torch.nn.Linear(5, 3).to('float64');
  const w0 = torch.noGrad(() => base.weight.clone()).keep();
  const lora = new LoRALinear(base, 2, 6);
  assert.equal(lora.weight, base.weight, 'the base tensors are shared, not copied');
  torch.noGrad(() => lora.lora_B.copy_(torch.randn([3, 2], { dtype: 'float64' })));
  const x = torch.randn([4, 5], { dtype: 'float64' }).keep();
  const expected = torch.scope(() => x.matmul(w0.t()).add(base.bias!)
    .add(x.matmul(lora.lora_A.t()).matmul(lora.lora_B.t()).mul(3))).keep();
  const got = torch.noGrad(() => lora.forward(x));
  assert.ok(maxAbsDiff(got, expected) < 1e-12, `forward differs by ${maxAbsDiff(got, expected)}`);
  const mergedWeight = torch.scope(() => w0.add(lora.lora_B.mm(lora.lora_A).mul(3))).keep();
  const plain = lora.merge();
  assert.equal(plain, base);
  assert.ok(maxAbsDiff(plain.weight, mergedWeight) < 1e-12);
  assert.ok(maxAbsDiff(torch.noGrad(() => plain.forward(x)), expected) < 1e-12);
});

test('LoRA with zero B and AdaptFormer at init equal the base model exactly', () => {
  const ref = run(pretrained());
  for (const o of [{ method: 'lora' }, { method: 'lora', loraRank: 2, loraAlpha: 16 }, { method: 'adaptformer' }] as PeftOptions[]) {
    const m = pretrained();
    applyPeft(m, o);
    assert.equal(maxAbsDiff(run(m), ref), 0, JSON.stringify(o));
  }
});

test('the AdaptFormer MLP adds s * up(relu(down(x))) to the MLP output', () => {
  const m = pretrained();
  applyPeft(m, { method: 'adaptformer', adapterDim: 8, adapterScale: 0.25 });
  const mlp = m.blocks.at(1).mlp as unknown as AdaptFormerMlp;
  assert.ok(mlp instanceof AdaptFormerMlp);
  const a = mlp.adapter;
  torch.noGrad(() => {
    a.up_proj.weight.normal_(0, 0.3);
    a.up_proj.bias!.normal_(0, 0.3);
    a.down_proj.bias!.normal_(0, 0.3);
  });
  const x = torch.randn([2, 5, 32]).keep();
  const expected = torch.noGrad(() => torch.scope(() => {
    const h = x.matmul(mlp.fc1.weight.t()).add(mlp.fc1.bias!);
    const gelu = torch.F.gelu(h, 'tanh');
    const base = gelu.matmul(mlp.fc2.weight.t()).add(mlp.fc2.bias!);
    const down = x.matmul(a.down_proj.weight.t()).add(a.down_proj.bias!).relu();
    return base.add(down.matmul(a.up_proj.weight.t()).add(a.up_proj.bias!).mul(0.25));
  })).keep();
  const got = torch.noGrad(() => mlp.forward(x));
  assert.ok(maxAbsDiff(got, expected) < 1e-5, `differs by ${maxAbsDiff(got, expected)}`);
  assert.ok(maxAbsDiff(got, torch.noGrad(() => mlp.base.forward(x))) > 1e-2, 'the adapter contributes');
});

test('after training, the merged LoRA model equals the unmerged one and is a plain DiT', () => {
  const base = run(pretrained());
  const m = pretrained();
  applyPeft(m, { method: 'lora', loraRank: 4, loraAlpha: 8 });
  m.train();
  train(m, 3);
  m.eval();
  const unmerged = run(m);
  assert.ok(maxAbsDiff(unmerged, base) > 1e-2, 'training moved the output');
  mergeLoRA(m);
  const merged = run(m);
  const err = maxAbsDiff(merged, unmerged) / maxAbs(unmerged);
  assert.ok(err <= 1e-5, `merged output differs by ${err} (relative)`);
  assert.ok(m.blocks.at(0).attn.qkv instanceof torch.nn.Linear && !(m.blocks.at(0).attn.qkv instanceof LoRALinear));
  assert.deepEqual([...m.stateDict().keys()], [...WEIGHTS.keys()], 'plain DiT keys, in the official order');
  assert.equal(peftMethodOf(m), null);
  const plain = new DiT(CONFIG, { initialize: false });
  plain.loadStateDict(m.stateDict());
  assert.equal(maxAbsDiff(run(plain.eval()), merged), 0, 'saves and reloads as a plain DiT');
});

test('an official-layout state dict loads into a LoRA-adapted model', () => {
  const m = new DiT(CONFIG);
  applyPeft(m, { method: 'lora' });
  const report = m.loadStateDict(WEIGHTS, { strict: false });
  assert.deepEqual(sorted(report.missing), sorted(loraKeys(LORA_LAYERS)));
  assert.deepEqual(report.unexpected, []);
  assert.deepEqual(report.mismatched, []);

  const n = new DiT(CONFIG);
  applyPeft(n, { method: 'lora' });
  loadBaseStateDict(n, WEIGHTS);
  assert.equal(maxAbsDiff(run(n.eval()), run(pretrained())), 0);
  const broken = new Map(WEIGHTS);
  broken.delete('blocks.1.mlp.fc2.weight');
  assert.throws(() => loadBaseStateDict(n, broken, 'ckpt.pt'), /cannot load ckpt\.pt:[\s\S]*missing keys \(1\): blocks\.1\.mlp\.fc2\.weight/);
});

test('peftStateDict holds only the trained tensors and reloads into a fresh adapted model', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-peft-'));
  const cases: [PeftOptions, string[]][] = [
    [{ method: 'lora', loraRank: 4 }, loraKeys(LORA_LAYERS)],
    [{ method: 'adaptformer', adapterDim: 8 }, ADAPTER_KEYS],
    [{ method: 'difffit' }, [...BIASES, ...GAMMAS, TABLE]],
  ];
  for (const [o, expected] of cases) {
    torch.manualSeed(11);
    const m = pretrained();
    applyPeft(m, o);
    m.train();
    train(m, 2);
    const trained = run(m.eval());
    const sd = peftStateDict(m);
    assert.deepEqual(sorted(sd.keys()), sorted(expected), o.method);
    const file = path.join(tmp, `${o.method}.safetensors`);
    torch.saveSafetensors(file, sd);

    torch.manualSeed(99); // other adapter initial values
    const fresh = pretrained();
    applyPeft(fresh, o);
    assert.ok(maxAbsDiff(run(fresh), trained) > 1e-3, `${o.method}: the fresh model differs before loading`);
    const loaded = torch.loadSafetensors(file);
    loadPeftStateDict(fresh, loaded);
    assert.equal(maxAbsDiff(run(fresh), trained), 0, `${o.method}: reloaded adapters reproduce the output`);

    const missing = new Map(loaded);
    missing.delete(expected[0]);
    assert.throws(() => loadPeftStateDict(fresh, missing, file), new RegExp(`missing keys \\(1\\): ${expected[0].replace(/\./g, '\\.')}`));
    const extra = new Map(loaded);
    extra.set('blocks.0.attn.qkv.weight', WEIGHTS.get('blocks.0.attn.qkv.weight')!);
    assert.throws(() => loadPeftStateDict(fresh, extra), /unexpected keys \(1\): blocks\.0\.attn\.qkv\.weight/);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('default learning rates: DiffFit as the Diff-Tuning code, one for every method', () => {
  assert.equal(PEFT_DEFAULT_LR.difffit, 1e-3);
  assert.equal(PEFT_DEFAULT_LR.none, 1e-4);
  assert.deepEqual(sorted(Object.keys(PEFT_DEFAULT_LR)), sorted(['none', 'difffit', 'bitfit', 'lora', 'adaptformer']));
});

test('replaceModule keeps the state-dict order and repoints the property', () => {
  const m = pretrained();
  const attn = m.blocks.at(0).attn;
  const old = attn.qkv;
  const order = [...m.stateDict().keys()];
  const replacement = new torch.nn.Linear(32, 96);
  attn.replaceModule('qkv', replacement);
  assert.equal(attn.qkv, replacement);
  assert.deepEqual([...m.stateDict().keys()], order);
  assert.equal(m.stateDict().get('blocks.0.attn.qkv.weight'), replacement.weight);
  assert.notEqual(replacement.weight, old.weight);
  assert.throws(() => attn.replaceModule('qkvv', replacement), /Attention has no child 'qkvv' \(children: qkv, proj\)/);
  assert.throws(() => m.blocks.replaceModule('0', m.blocks.at(1)), /not a plain property/);
});
