// The configuration of diffusers' DDPM / DDIM / PNDM schedulers (scheduler_config.json), with each
// class's own constructor defaults, read the way `Cls.from_config(config)` reads it: the fields a
// class knows are taken, the rest ignored. Options diffusers has and difftune does not implement
// (thresholding, zero-terminal-SNR rescaling, learned variances) are refused with an error naming them.

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
/** DDPM's fixed variances (diffusers' learned ones and fixed_large_log, a learned_range ingredient, are not offered). */
export type VarianceType = 'fixed_small' | 'fixed_small_log' | 'fixed_large';
export type SchedulerKind = 'ddpm' | 'ddim' | 'pndm';

/** Every field the three schedulers read (diffusers' names camelCased). */
export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas: number[] | null;
  predictionType: PredictionType;
  /** DDPM / DDIM: clamp the predicted x0 to [-clipSampleRange, clipSampleRange]. */
  clipSample: boolean;
  clipSampleRange: number;
  /** DDIM / PNDM: the alpha-bar "before" step 0 is 1 (true) or alphas_cumprod[0] (false). */
  setAlphaToOne: boolean;
  stepsOffset: number;
  timestepSpacing: TimestepSpacing;
  /** PNDM: PLMS only (what Stable Diffusion uses), no Runge-Kutta warm-up. */
  skipPrkSteps: boolean;
  /** DDPM: the variance of p(x_{t-1} | x_t). */
  varianceType: VarianceType;
}

const COMMON: SchedulerConfig = {
  numTrainTimesteps: 1000, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear', trainedBetas: null,
  predictionType: 'epsilon', clipSample: true, clipSampleRange: 1.0, setAlphaToOne: true, stepsOffset: 0,
  timestepSpacing: 'leading', skipPrkSteps: false, varianceType: 'fixed_small',
};

/** Each class's constructor defaults (diffusers 0.40). */
export const SCHEDULER_DEFAULTS: Readonly<Record<SchedulerKind, Readonly<SchedulerConfig>>> = Object.freeze({
  ddpm: { ...COMMON },
  ddim: { ...COMMON },
  pndm: { ...COMMON, clipSample: false, setAlphaToOne: false },
});

/** stable-diffusion-v1-5's scheduler/scheduler_config.json (a PNDMScheduler; pipelines build the others from it). */
export const SD15_SCHEDULER_JSON: Readonly<Record<string, unknown>> = Object.freeze({
  _class_name: 'PNDMScheduler', num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012,
  beta_schedule: 'scaled_linear', trained_betas: null, skip_prk_steps: true, set_alpha_to_one: false,
  steps_offset: 1, clip_sample: false,
});

/** Which config fields each class reads (its constructor arguments). */
const KNOWN: Record<SchedulerKind, (keyof SchedulerConfig)[]> = {
  ddpm: ['numTrainTimesteps', 'betaStart', 'betaEnd', 'betaSchedule', 'trainedBetas', 'varianceType', 'clipSample',
    'predictionType', 'clipSampleRange', 'timestepSpacing', 'stepsOffset'],
  ddim: ['numTrainTimesteps', 'betaStart', 'betaEnd', 'betaSchedule', 'trainedBetas', 'clipSample', 'setAlphaToOne',
    'stepsOffset', 'predictionType', 'clipSampleRange', 'timestepSpacing'],
  pndm: ['numTrainTimesteps', 'betaStart', 'betaEnd', 'betaSchedule', 'trainedBetas', 'skipPrkSteps', 'setAlphaToOne',
    'predictionType', 'timestepSpacing', 'stepsOffset'],
};

const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Options of diffusers that change results and are not implemented: refused unless at their off value. */
const UNSUPPORTED: Record<string, unknown> = { thresholding: false, rescale_betas_zero_snr: false };

const CHOICES: Partial<Record<keyof SchedulerConfig, readonly string[]>> = {
  betaSchedule: ['linear', 'scaled_linear', 'squaredcos_cap_v2'],
  predictionType: ['epsilon', 'v_prediction', 'sample'],
  timestepSpacing: ['leading', 'trailing', 'linspace'],
  varianceType: ['fixed_small', 'fixed_small_log', 'fixed_large'],
};

/**
 * A scheduler_config.json object -> the config `kind` would get from Cls.from_config: its own
 * defaults overridden by the fields it knows. `where` names the source in errors.
 */
export function schedulerConfigFromJson(kind: SchedulerKind, json: Readonly<Record<string, unknown>>, where = 'scheduler config'): SchedulerConfig {
  const out: Record<string, unknown> = { ...SCHEDULER_DEFAULTS[kind] };
  for (const [key, off] of Object.entries(UNSUPPORTED)) {
    if (json[key] !== undefined && json[key] !== off) {
      throw new Error(`${where}: '${key}' = ${JSON.stringify(json[key])} is not supported (only ${JSON.stringify(off)})`);
    }
  }
  for (const field of KNOWN[kind]) {
    const key = snake(field);
    if (json[key] === undefined) continue;
    out[field] = json[key];
  }
  const config = out as unknown as SchedulerConfig;
  validateSchedulerConfig(config, where);
  return config;
}

/** A full config from camelCase overrides on a class's defaults. */
export function schedulerConfig(kind: SchedulerKind, overrides: Partial<SchedulerConfig> = {}): SchedulerConfig {
  const config = { ...SCHEDULER_DEFAULTS[kind], ...overrides };
  validateSchedulerConfig(config, `${kind} scheduler config`);
  return config;
}

export function validateSchedulerConfig(c: SchedulerConfig, where: string): void {
  const bad = (field: keyof SchedulerConfig, want: string): never => {
    throw new Error(`${where}: '${snake(field)}' must be ${want}, got ${JSON.stringify(c[field])}`);
  };
  if (!Number.isInteger(c.numTrainTimesteps) || c.numTrainTimesteps < 1) bad('numTrainTimesteps', 'a positive integer');
  if (typeof c.betaStart !== 'number' || !(c.betaStart >= 0)) bad('betaStart', 'a non-negative number');
  if (typeof c.betaEnd !== 'number' || !(c.betaEnd >= 0)) bad('betaEnd', 'a non-negative number');
  if (!Number.isInteger(c.stepsOffset) || c.stepsOffset < 0) bad('stepsOffset', 'a non-negative integer');
  if (typeof c.clipSampleRange !== 'number' || !(c.clipSampleRange > 0)) bad('clipSampleRange', 'a positive number');
  for (const f of ['clipSample', 'setAlphaToOne', 'skipPrkSteps'] as const) if (typeof c[f] !== 'boolean') bad(f, 'true or false');
  for (const [f, choices] of Object.entries(CHOICES) as [keyof SchedulerConfig, readonly string[]][]) {
    if (!choices.includes(c[f] as string)) bad(f, `one of ${choices.map((x) => `"${x}"`).join(', ')}`);
  }
  if (c.trainedBetas !== null) {
    if (!Array.isArray(c.trainedBetas) || c.trainedBetas.some((b) => typeof b !== 'number' || !(b > 0 && b < 1))) {
      bad('trainedBetas', 'null or a list of numbers in (0, 1)');
    }
  }
}
