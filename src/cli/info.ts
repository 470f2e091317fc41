// `difftune info`: what this installation runs on, including which BLAS serves the CPU matmuls
// and how fast float32 and bf16 matmuls run here (measured now, about a second).
import * as torch from '../torch';
import { parseFlags } from './args';
import { configureThreads } from './threads'; // warns (stderr) when the BLAS is the slow one

export function runInfo(argv: string[] = []): void {
  if (!parseFlags('info', 'Show the libtorch build, the BLAS library, bf16 support, matmul rates and devices.', {}, argv)) return;
  configureThreads();
  const build = torch.buildInfo();
  console.log(`libtorch ${build.torchVersion} (${build.cudaBuild ? 'CUDA build' : 'CPU build'})`);
  console.log(`intra-op threads: ${torch.getNumThreads()}`);
  const blas = torch.blasInfo();
  console.log(`BLAS (sgemm_): ${torch.describeBlas(blas)}${blas.config ? ` [${blas.config}]` : ''}`);
  const cpu = torch.cpuFeatures();
  console.log(`CPU: ${cpu.model}; bf16 instructions: ${cpu.bf16.length ? cpu.bf16.join(', ') : 'none'}`);
  const fp32 = torch.matmulGflops({ n: 512 });
  const bf16 = torch.matmulGflops({ n: 512, dtype: 'bfloat16' });
  console.log(`matmul 512x512x512: float32 ${fp32.toFixed(1)} GFLOP/s, bfloat16 ${bf16.toFixed(1)} GFLOP/s (${(bf16 / fp32).toFixed(2)}x)`);
  const n = torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0;
  console.log(n ? `CUDA devices: ${n}` : 'CUDA: not available');
}
