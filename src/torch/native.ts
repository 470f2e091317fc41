// Loads the compiled addon and types its surface. Everything native goes through here.
import * as fs from 'fs';
import * as path from 'path';

/** An opaque handle to a libtorch tensor (a napi External). */
export type Handle = { readonly __handle: unique symbol };
export type GeneratorHandle = { readonly __generator: unique symbol };

export interface NativeAddon {
  findOp(name: string, overload: string): number;
  call(op: number, ...args: unknown[]): unknown;
  callVoid(op: number, ...args: unknown[]): void;
  opSchema(op: number): string;

  fromBuffer(bytes: ArrayBufferView, shape: number[], dtype: number, device?: string): Handle;
  toBuffer(h: Handle): ArrayBuffer;
  shape(h: Handle): number[];
  strides(h: Handle): number[];
  dtype(h: Handle): number;
  device(h: Handle): string;
  item(h: Handle): number | boolean;
  dispose(h: Handle): void;
  isDisposed(h: Handle): boolean;
  requiresGrad(h: Handle): boolean;
  setRequiresGrad(h: Handle, value: boolean): void;
  grad(h: Handle): Handle | null;
  setGrad(h: Handle, g: Handle | null): void;
  isLeaf(h: Handle): boolean;
  retainGrad(h: Handle): void;
  gradFn(h: Handle): string | null;
  sameStorage(a: Handle, b: Handle): boolean;
  liveTensors(): number;

  backward(tensors: Handle[], grads: (Handle | null)[] | undefined, retainGraph: boolean | undefined, createGraph: boolean): void;
  autogradGrad(outputs: Handle[], inputs: Handle[], gradOutputs: (Handle | null)[] | undefined,
    retainGraph: boolean | undefined, createGraph: boolean, allowUnused: boolean): (Handle | null)[];
  setGradEnabled(enabled: boolean): boolean;
  isGradEnabled(): boolean;
  setAutocast(deviceType: 'cuda' | 'cpu', enabled: boolean, dtype: number): [boolean, number];
  autocastEnter(): void;
  autocastExit(): void;

  manualSeed(seed: number | bigint): void;
  newGenerator(device: string, seed: number | bigint): GeneratorHandle;
  defaultGenerator(device: string): GeneratorHandle;
  generatorSeed(g: GeneratorHandle, seed?: number | bigint): bigint;
  generatorGetState(g: GeneratorHandle): Handle;
  generatorSetState(g: GeneratorHandle, state: Handle): void;
  cudaIsAvailable(): boolean;
  cudaDeviceCount(): number;
  cudaSynchronize(index?: number): void;
  cudaMemoryStats(index: number): { allocated: number; peakAllocated: number; reserved: number; peakReserved: number } | null;
  cudaEmptyCache(): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setBlasThreads(n: number): boolean;
  blasInfo(): { library: string; file: string; vendor: string; config: string; parallel: string; threads: number };
  setMatmulPrecision(p: 'highest' | 'high' | 'medium'): void;
  setCudnnFlags(benchmark: boolean, allowTf32: boolean): void;
  buildInfo(): { torchVersion: string; cudaBuild: boolean; parallelInfo: string };
}

function load(): NativeAddon {
  const override = process.env.DIFFTUNE_ADDON;
  if (override) {
    // An explicit choice must not fall back silently to another build; relative paths mean the working directory.
    const resolved = path.resolve(override);
    if (!fs.existsSync(resolved)) throw new Error(`DIFFTUNE_ADDON=${override}: no file at ${resolved} (expected a built difftune.node).`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(resolved) as NativeAddon;
  }
  // dist/src/torch -> repo root is three levels up; src/torch (ts-node style) is two.
  const candidates = [
    path.join(__dirname, '..', '..', '..', 'native', 'build', 'difftune.node'),
    path.join(__dirname, '..', '..', 'native', 'build', 'difftune.node'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(`difftune's native addon is not built (looked in ${candidates.join(', ')}): run \`npm run build:native\`.`);
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(found) as NativeAddon;
}

export const native: NativeAddon = load();
