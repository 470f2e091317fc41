// The EMA decay of a shortened run (the demo and bench:transfer use it). The reference trains 24,000 steps with decay 0.9999, so its
// evaluated EMA still holds 0.9999^24000 = 9.07% of the pretrained weights (an implicit retention
// that every method shares) and averages over a window of 1/(1 - 0.9999) = 10,000 steps, 42% of
// the run. A run of S steps keeps both proportions with decay = 0.9999^(24000 / S): then
// decay^S = 0.9999^24000 exactly, and the window 1/(1 - decay) is ~0.42 S. Runs of 24,000 steps
// or more keep the reference's 0.9999.

export const REFERENCE_STEPS = 24_000;
export const REFERENCE_EMA_DECAY = 0.9999;

export function scaledEmaDecay(steps: number): number {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  if (steps >= REFERENCE_STEPS) return REFERENCE_EMA_DECAY;
  return Math.pow(REFERENCE_EMA_DECAY, REFERENCE_STEPS / steps);
}
