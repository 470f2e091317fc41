// The learning rate of each optimizer step: constant (the reference's, and the default), or a
// linear or cosine decay to zero at run.steps; any of them after a linear warm-up.
export const LR_SCHEDULES = ['constant', 'linear', 'cosine'] as const;
export type LrSchedule = (typeof LR_SCHEDULES)[number];

/**
 * The rate for the update made at `step` (0-based: the update that completes step + 1). Warm-up
 * rises as (step + 1) / warmup, so the first update already moves the weights.
 */
export function scheduledLr(base: number, schedule: LrSchedule, step: number, totalSteps: number, warmupSteps: number): number {
  if (step < warmupSteps) return (base * (step + 1)) / warmupSteps;
  if (schedule === 'constant') return base;
  const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  return schedule === 'linear' ? base * (1 - progress) : base * 0.5 * (1 + Math.cos(Math.PI * progress));
}
