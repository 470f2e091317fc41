// `difftune info`: what this installation runs on.
import * as torch from '../torch';

export function runInfo(): void {
  const build = torch.buildInfo();
  console.log(`libtorch ${build.torchVersion} (${build.cudaBuild ? 'CUDA build' : 'CPU build'})`);
  console.log(`intra-op threads: ${torch.getNumThreads()}`);
  const n = torch.cuda.isAvailable() ? torch.cuda.deviceCount() : 0;
  console.log(n ? `CUDA devices: ${n}` : 'CUDA: not available');
}
