// Sketch: thin dark lines on white, the thinned gradient (one pixel wide after non-maximum
// suppression) drawn with a darkness that ramps from 0 at `low` to full black at `high`. Unlike
// canny it keeps grey levels (faint edges are faint strokes) and has no hysteresis.
import { scope } from '../../torch/scope';
import { Tensor } from '../../torch/tensor';
import { thinGradient } from './gradient';

export interface SketchOptions {
  /** Gaussian blur before the gradient, in pixels (0: none). */
  sigma: number;
  /** Gradient magnitude (luma contrast, a hard black-to-white step is 1) where strokes start, and where they are black. */
  low: number;
  high: number;
}

/** Same blur as canny; strokes from a contrast of 0.05, black from 0.2 (canny's strong threshold). */
export function sketchDefaults(side: number): SketchOptions {
  return { sigma: side <= 64 ? 0.5 : 1, low: 0.05, high: 0.2 };
}

/** [B, 3, H, W] in [-1, 1] -> [B, 1, H, W] in [0, 1]: 1 is paper, 0 a black stroke. */
export function sketchLines(images: Tensor, o: SketchOptions): Tensor {
  return scope(() => thinGradient(images, o.sigma).sub(o.low).div(o.high - o.low).clamp(0, 1).rsub(1));
}
