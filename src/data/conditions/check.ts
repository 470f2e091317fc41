// Input checks shared by the condition extractors: errors name the function and the shape seen.
import { isFloating } from '../../torch/dtype';
import { Tensor } from '../../torch/tensor';

/** Throws unless images is a floating [B, 3, H, W] tensor. */
export function checkImages(images: Tensor, what: string): void {
  const s = images.shape;
  if (s.length !== 4 || s[1] !== 3 || !isFloating(images.dtype)) {
    throw new TypeError(`${what}: images must be floating [B, 3, H, W] in [-1, 1], got ${images.dtype} [${s.join(', ')}]`);
  }
}

/** Throws unless v is a finite number within [min, max] (integer if asked); names the option. */
export function checkNumber(what: string, name: string, v: unknown, min: number, max: number, integer = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new RangeError(`${what}: option ${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}
