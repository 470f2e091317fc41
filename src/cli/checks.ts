// Checks of flag values that the library would otherwise reject deep inside, with messages that
// name its own function ("torch.cat(): expected a non-empty list") instead of the flag.
import { spaceTimesteps } from '../diffusion/respace';

/** A whole number >= 1. */
export function positiveInt(flag: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${flag} must be a whole number >= 1, got ${value}`);
  return value;
}

/** A timestep respacing ('250', 'ddim50', '10,20,30') that keeps at least one of the 1000 steps. */
export function respacing(flag: string, text: string): string {
  let kept: number[];
  try {
    kept = spaceTimesteps(1000, text);
  } catch (e) {
    throw new Error(`--${flag} '${text}': ${(e as Error).message.replace(/^spaceTimesteps: /, '')} ` +
      "(expected a step count such as '250', 'ddim50' for DDIM's even stride, or comma-separated counts per section)");
  }
  if (kept.length === 0) throw new Error(`--${flag} '${text}' keeps no timestep: give at least 1 step`);
  return text;
}
