// A diffusion that skips steps of a base process (DiT's SpacedDiffusion and _WrappedModel):
// its tables are indexed by the respaced step, while the model always sees the ORIGINAL
// timestep timestepMap[i] it was trained on.
import * as torch from '../torch';
import { Tensor } from '../torch';
import { GaussianDiffusion, GaussianDiffusionOptions, isWrapped, markWrapped } from './gaussian-diffusion';
import { respaceBetas } from './respace';
import { computeSchedule } from './schedule';
import { DiffusionModel } from './types';

export class SpacedDiffusion extends GaussianDiffusion {
  /** The original steps kept. */
  readonly useTimesteps: ReadonlySet<number>;
  /** Number of steps of the base process. */
  readonly originalNumSteps: number;
  private readonly map: readonly number[];
  private readonly mapTensors = new Map<string, Tensor>();

  /**
   * useTimesteps: the steps of the base process to keep (e.g. from spaceTimesteps); o.betas are
   * the BASE process's betas; the kept steps get betas 1 - ac[t_k]/ac[t_{k-1}].
   */
  constructor(useTimesteps: Iterable<number>, o: GaussianDiffusionOptions) {
    const base = computeSchedule(o.betas);
    const r = respaceBetas(base.alphasCumprod, useTimesteps);
    super({ ...o, betas: r.betas });
    this.useTimesteps = new Set(r.timestepMap);
    this.originalNumSteps = base.betas.length;
    this.map = Object.freeze([...r.timestepMap]);
  }

  override get timestepMap(): readonly number[] {
    return this.map;
  }

  /** timestepMap as an int64 tensor on a device (kept; freed by dispose()). */
  timestepMapTensor(device: torch.Device = 'cpu'): Tensor {
    let t = this.mapTensors.get(device);
    if (!t || t.isDisposed) {
      t = torch.fromTypedArray(BigInt64Array.from(this.map, (v) => BigInt(v)), undefined, { device }).keep();
      this.mapTensors.set(device, t);
    }
    return t;
  }

  /** Maps respaced indices to original timesteps (same dtype and device as t). */
  mapTimesteps(t: Tensor): Tensor {
    return torch.scope(() => {
      const idx = t.dtype === 'int64' ? t : t.to({ dtype: 'int64' });
      const mapped = this.timestepMapTensor(t.device).index([idx]);
      return mapped.dtype === t.dtype ? mapped : mapped.to({ dtype: t.dtype });
    });
  }

  /** The model called with timestepMap[t] in place of t (idempotent). */
  override wrapModel<K>(model: DiffusionModel<K>): DiffusionModel<K> {
    if (isWrapped(model)) return model;
    return markWrapped((x: Tensor, t: Tensor, kwargs: K) => torch.scope(() => model(x, this.mapTimesteps(t), kwargs)));
  }

  override dispose(): void {
    super.dispose();
    for (const t of this.mapTensors.values()) t.dispose();
    this.mapTensors.clear();
  }
}
