// Seeds and generators. On CPU, the same seed gives the same numbers as PyTorch.
import { GeneratorHandle, native } from './native';
import { Tensor } from './tensor';
import type { Device } from './tensor';

/** Seeds the global generators of every device, like torch.manual_seed. */
export function manualSeed(seed: number | bigint): void {
  native.manualSeed(seed);
}

/** A random number generator of its own, like torch.Generator(device).manual_seed(seed). */
export class Generator {
  readonly gh: GeneratorHandle;
  constructor(readonly device: Device = 'cpu', seed: number | bigint = 67280421310721n) {
    this.gh = native.newGenerator(device, seed);
  }
  /** The global generator of a device (shares state with manualSeed). */
  static default(device: Device = 'cpu'): Generator {
    const g = Object.create(Generator.prototype) as { gh: GeneratorHandle; device: Device };
    g.gh = native.defaultGenerator(device);
    g.device = device;
    return g as Generator;
  }
  manualSeed(seed: number | bigint): this {
    native.generatorSeed(this.gh, seed);
    return this;
  }
  initialSeed(): bigint {
    return native.generatorSeed(this.gh);
  }
  /** The full state as a uint8 tensor (to save for an exact resume). */
  getState(): Tensor {
    return new Tensor(native.generatorGetState(this.gh));
  }
  setState(state: Tensor): void {
    native.generatorSetState(this.gh, state.h);
  }
}
