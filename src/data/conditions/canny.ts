// Canny edges: thinned gradient (gradient.ts), double threshold, and hysteresis done as repeated
// 3x3 dilation of the strong edges restricted to the weak ones, until nothing changes.
import { maxPool2d } from '../../torch/functional';
import { scope } from '../../torch/scope';
import { Tensor } from '../../torch/tensor';
import { thinGradient } from './gradient';

export interface CannyOptions {
  /** Gaussian blur before the gradient, in pixels (0: none). */
  sigma: number;
  /** Weak and strong thresholds on the gradient magnitude, in units of luma contrast (a hard black-to-white step is 1). */
  low: number;
  high: number;
}

/**
 * Defaults by image side: small icons (<= 64 px) have hard one-pixel edges and little noise, so a
 * light blur; larger images get sigma 1. The thresholds (0.1, 0.2) are OpenCV's usual 100/200 on
 * 8-bit images (its Sobel's unit step is 4 x 255, so 200 is about 0.2 of a full step).
 */
export function cannyDefaults(side: number): CannyOptions {
  return { sigma: side <= 64 ? 0.5 : 1, low: 0.1, high: 0.2 };
}

/** Dilation steps between the fixed-point checks (each check is a device sync). */
const STEPS_PER_CHECK = 4;

/** [B, 3, H, W] in [-1, 1] -> [B, 1, H, W] edges in {0, 1}, same dtype. */
export function cannyEdges(images: Tensor, o: CannyOptions): Tensor {
  return scope(() => {
    const thin = thinGradient(images, o.sigma);
    const weak = thin.ge(o.low).to({ dtype: images.dtype });
    let edges = thin.ge(o.high).to({ dtype: images.dtype });
    let count = edges.sum().item();
    for (;;) {
      const next = scope(() => {
        let e = edges;
        for (let i = 0; i < STEPS_PER_CHECK; i++) e = maxPool2d(e, 3, { stride: 1, padding: 1 }).mul(weak);
        return e;
      });
      const n = next.sum().item();
      edges.dispose(); // long edge chains take many rounds: free each round's map as we go
      edges = next;
      if (n === count) return edges;
      count = n;
    }
  });
}
