// The DiT-XL/2 workflow's pieces that run without a GPU: the memory plan from a config alone
// (parameter counts exact against built models, DiT-XL/2 at 675M), bf16 and checkpointing
// estimates, and fused attention against the explicit softmax path where libtorch has it.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { DiT, ditConfig, DiTConfig } from '../src/models/dit';
import * as torch from '../src/torch';
import { ditParameterCount, planMemory } from '../src/tuning/plan';

const { F } = torch;

test('ditParameterCount equals the built model for every variant; DiT-XL/2 at 256px has 675M parameters', () => {
  const base = { inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 3, numHeads: 2, numClasses: 5 };
  const variants: Partial<DiTConfig>[] = [
    {}, { learnSigma: false }, { classDropoutProb: 0 }, { useGamma: true }, { useGamma: true, gammaDepth: 3 }, { mlpRatio: 2.5, patchSize: 4 },
  ];
  for (const v of variants) {
    const model = new DiT({ ...base, ...v }, { initialize: false });
    const actual = model.parameters().reduce((s, p) => s + p.numel, 0);
    const counted = ditParameterCount(model.config);
    assert.equal(counted.total, actual, JSON.stringify(v));
    assert.equal(counted.posEmbed, model.pos_embed.numel);
  }
  const xl = ditParameterCount(ditConfig('DiT-XL/2', { inputSize: 32, inChannels: 4, numClasses: 1000 }));
  console.log(`# DiT-XL/2 parameters: ${xl.total}`);
  assert.ok(Math.abs(xl.total - 675e6) / 675e6 < 0.01, `DiT-XL/2: ${xl.total}`);
  const b2 = ditParameterCount(ditConfig('DiT-B/2', { inputSize: 32 }));
  assert.ok(Math.abs(b2.total - 130e6) / 130e6 < 0.01, `DiT-B/2: ${b2.total}`);
});

test('plan for DiT-XL/2 at 256px (32x32 latents), batch 32: exact states, activations scale with batch, bf16 and checkpointing shrink them', () => {
  const config = ditConfig('DiT-XL/2', { inputSize: 32, inChannels: 4, numClasses: 1000 });
  const { total: n, posEmbed } = ditParameterCount(config);
  const fp32 = planMemory(config, { batchSize: 32, precision: 'fp32', device: 'cuda', capacity: 80 * 2 ** 30 });
  const bf16 = planMemory(config, { batchSize: 32, precision: 'bf16', device: 'cuda', capacity: 80 * 2 ** 30 });
  const ckpt = planMemory(config, { batchSize: 32, precision: 'bf16', device: 'cuda', checkpointing: true, capacity: 80 * 2 ** 30 });
  const gib = (b: number): string => (b / 2 ** 30).toFixed(1);
  console.log(`# DiT-XL/2 batch 32: fp32 ${gib(fp32.total)} GiB (act ${gib(fp32.activations)}), bf16 ${gib(bf16.total)} GiB, bf16+ckpt ${gib(ckpt.total)} GiB`);
  assert.deepEqual([fp32.weights, fp32.gradients, fp32.optimizer, fp32.ema], [4 * n, 4 * (n - posEmbed), 8 * (n - posEmbed), 4 * (n - posEmbed)]);
  assert.equal(bf16.castWeights, 2 * n);
  assert.ok(Math.abs(bf16.activations * 2 - fp32.activations) < 1, 'bf16 halves activations');
  assert.ok(ckpt.activations < bf16.activations / 5, 'checkpointing keeps block inputs only');
  // Weight-sized state is 16 bytes per parameter: ~10 GiB; activations of 28 blocks x 256 tokens x 32 samples dominate.
  assert.ok(fp32.weights + fp32.gradients + fp32.optimizer + fp32.ema > 9.5 * 2 ** 30 && fp32.total < 80 * 2 ** 30);
  assert.ok(fp32.activations > 10 * 2 ** 30 && fp32.activations < 40 * 2 ** 30, gib(fp32.activations));
  const double = planMemory(config, { batchSize: 64, precision: 'fp32', device: 'cuda' });
  assert.ok(Math.abs(double.activations - 2 * fp32.activations) < 1);
  assert.equal(double.fits, null, 'CUDA capacity unknown unless given');
});

test('fused scaled_dot_product_attention equals the explicit softmax path (libtorch 2.x only)', (t) => {
  if (!F.hasFusedAttention()) {
    t.skip('this libtorch has no fused attention (1.13): DiT uses the explicit path');
    return;
  }
  torch.manualSeed(3);
  torch.scope(() => {
    const [q, k, v] = [0, 1, 2].map(() => torch.randn([2, 4, 64, 32]));
    const diff = F.scaledDotProductAttention(q, k, v).sub(F.explicitAttention(q, k, v)).abs().max().item();
    assert.ok(diff < 1e-5, `max difference ${diff}`);
  });
});
