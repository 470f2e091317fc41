// The TypeScript side of `npm run bench:scale`: bench:engine's training step (../engine/ts_step.ts)
// with the scale models registered, or with --matmul-rate the device's measured matmul rate.
import * as torch from '../../src/torch';
import { CONFIGS } from '../engine/configs';
import { SCALE_MODELS } from './configs';

for (const { key, config } of Object.values(SCALE_MODELS)) CONFIGS[key] = config;

/** TFLOP/s of a square matmul (bf16 8192 on CUDA, fp32 512 on the CPU), timed after a warm-up. */
function matmulRate(device: 'cpu' | 'cuda'): void {
  const cuda = device === 'cuda';
  const n = cuda ? 8192 : 512;
  const dtype = cuda ? 'bfloat16' : 'float32';
  const [a, b] = [0, 1].map(() => torch.randn([n, n], { device, dtype }));
  const run = (k: number): number => {
    if (cuda) torch.cuda.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < k; i++) a.matmul(b).dispose();
    if (cuda) torch.cuda.synchronize();
    return (performance.now() - t0) / 1000;
  };
  run(3);
  const reps = cuda ? 50 : 5;
  const seconds = run(reps);
  console.log(JSON.stringify({ side: 'ts', blas: torch.describeBlas(), matmul: `${dtype} ${n}`, tflops: (2 * n ** 3 * reps) / seconds / 1e12 }));
}

const at = process.argv.indexOf('--matmul-rate');
if (at >= 0) {
  matmulRate(process.argv[at + 1] === 'cuda' ? 'cuda' : 'cpu');
} else {
  require('../engine/ts_step');
}
