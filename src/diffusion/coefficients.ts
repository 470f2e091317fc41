// Float64 coefficient tables as device tensors, gathered at timesteps the way the reference's
// _extract_into_tensor does: index the float64 table at t, cast (the reference always casts to
// float32; here to the dtype of the tensor it will multiply, which is float32 in practice),
// then broadcast to [N, 1, ..., 1] -> the full shape.
import * as torch from '../torch';
import { Device, DType, Tensor } from '../torch';

/** Named float64 tables, uploaded once per device (kept tensors, freed by dispose()). */
export class CoefficientTables {
  private readonly perDevice = new Map<string, Map<string, Tensor>>();
  private readonly arrays = new Map<string, Float64Array>();

  /** Registers a table under a name (replacing a previous one and its uploads). */
  define(name: string, values: ArrayLike<number>): void {
    this.arrays.set(name, Float64Array.from(values));
    for (const m of this.perDevice.values()) {
      m.get(name)?.dispose();
      m.delete(name);
    }
  }

  has(name: string): boolean {
    return this.arrays.has(name);
  }

  values(name: string): Float64Array {
    const a = this.arrays.get(name);
    if (!a) throw new Error(`no coefficient table '${name}'`);
    return a;
  }

  /** The float64 table on a device (kept; do not dispose it). */
  tensor(name: string, device: Device = 'cpu'): Tensor {
    let m = this.perDevice.get(device);
    if (!m) this.perDevice.set(device, (m = new Map()));
    let t = m.get(name);
    if (!t || t.isDisposed) {
      t = torch.fromTypedArray(this.values(name), undefined, { device }).keep();
      m.set(name, t);
    }
    return t;
  }

  /**
   * _extract_into_tensor(table, t, shape): table[t] cast to dtype, shaped [N, 1, ..., 1] and
   * expanded to shape (a view). t is an int64 [N] tensor on the target device.
   */
  extract(name: string, t: Tensor, shape: readonly number[], dtype: DType = 'float32'): Tensor {
    if (t.ndim !== 1) throw new Error(`extract('${name}'): timesteps must be 1-D, got shape [${t.shape}]`);
    if (shape.length < 1 || shape[0] !== t.shape[0]) {
      throw new Error(`extract('${name}'): ${t.shape[0]} timesteps for a batch of shape [${shape}]`);
    }
    return torch.scope(() => {
      const idx = t.dtype === 'int64' ? t : t.to({ dtype: 'int64' });
      const gathered = this.tensor(name, t.device).index([idx]).to({ dtype });
      const view = gathered.view([t.shape[0], ...new Array<number>(shape.length - 1).fill(1)]);
      return view.expand([...shape]);
    });
  }

  /** Frees every uploaded table (the float64 arrays stay; later calls upload again). */
  dispose(): void {
    for (const m of this.perDevice.values()) for (const t of m.values()) t.dispose();
    this.perDevice.clear();
  }
}
