// What the processor offers for low-precision matmuls, read from /proc/cpuinfo (Linux).
// bf16 autocast is fast only where the CPU has bf16 dot-product instructions (AVX512_BF16 or
// AMX); elsewhere oneDNN emulates them and bf16 runs slower than float32.
import * as fs from 'fs';
import * as os from 'os';

export interface CpuFeatures {
  model: string;
  /** The bf16 instruction sets present (e.g. ['avx512_bf16', 'amx_bf16']); empty when none. */
  bf16: string[];
}

export function cpuFeatures(): CpuFeatures {
  const model = os.cpus()[0]?.model ?? 'unknown';
  let flags: string[] = [];
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    // Not Linux: no flags to read; the start-up measurement of `precision: auto` still decides.
  }
  return { model, bf16: flags.filter((f) => f === 'avx512_bf16' || f === 'amx_bf16' || f === 'avx_vnni_bf16' || f === 'avxneconvert') };
}
