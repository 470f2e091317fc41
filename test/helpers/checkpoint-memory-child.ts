// One training step of a DiT whose activations dominate memory, in a fresh process so its peak
// resident memory is its own: node checkpoint-memory-child.js '{"checkpointing": true}'.
// Prints JSON: the peak growth (MiB) over the memory before the forward, after the forward and
// after the whole step (forward, backward, and with checkpointing its second phase).
import * as torch from '../../src/torch';
import { DiT } from '../../src/models/dit';

function mib(bytes: number): number {
  return bytes / 2 ** 20;
}

function main(checkpointing: boolean): void {
  torch.setNumThreads(1);
  torch.manualSeed(0);
  // 256 tokens of width 64, 8 blocks, batch 8: ~25 MiB of saved activations per block.
  const model = new DiT({ inputSize: 32, patchSize: 2, inChannels: 4, hiddenSize: 64, depth: 8, numHeads: 4, numClasses: 10, learnSigma: false });
  model.train();
  model.gradCheckpointing = checkpointing;
  const x = torch.randn([8, 4, 32, 32]);
  const t = torch.arange(0, 8, 1, { dtype: 'int64' });
  const y = torch.arange(0, 8, 1, { dtype: 'int64' });
  const before = process.memoryUsage().rss;
  const peak = (): number => mib(process.resourceUsage().maxRSS * 1024 - before);
  torch.scope(() => {
    const out = model.forward(x, t, y);
    const afterForward = peak();
    out.square().mean().backward();
    model.backwardCheckpointed();
    process.stdout.write(JSON.stringify({ afterForward, step: peak() }));
  });
}

main(Boolean(JSON.parse(process.argv[2] ?? '{}').checkpointing));
