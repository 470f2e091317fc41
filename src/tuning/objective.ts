// The training objective of every method as one configuration: which timestep law each half of
// the batch draws from (or is weighted by), how the batch splits into target and replay samples,
// and how per-sample losses combine into L = mean(target) + lambda * mean(replay).
import * as torch from '../torch';
import { Generator, Tensor } from '../torch';
import { Method, TrainConfig, usesBank } from './config';
import { gatherWeights, lossWeightTable, LossWeighting } from './loss-weights';
import { readTimestepWeights, TimestepDistribution, TimestepLaw } from './timesteps';

export interface Objective {
  method: Method;
  numTimesteps: number;
  /** The law of t for target samples (psi), and for replay samples (xi) when the method replays. */
  targetLaw: TimestepDistribution;
  replayLaw: TimestepDistribution | null;
  /** 'sample': t ~ law; 'weight': t ~ uniform, per-sample loss times T * p(t). */
  mode: 'sample' | 'weight';
  /** Per-timestep weights of the eps-MSE term (P2 / Min-SNR), or null. */
  mseWeights: Float64Array | null;
  retentionWeight: number;
  replayRatio: number;
}

function lawOf(kind: 'target' | 'replay', c: TrainConfig, T: number): TimestepLaw {
  const o = c.objective;
  const file = kind === 'target' ? o.targetWeights : o.replayWeights;
  if (file) return { kind: 'weights', weights: readTimestepWeights(file, T), source: file };
  if (kind === 'replay') return { kind: 'data-end', tau: o.tauReplay ?? o.tau };
  // Uniform t for the methods without reconsolidation (standard fine-tuning, pretraining).
  const psi = c.method === 'diff-tuning' || c.method === 'reconsolidation-only';
  return psi ? { kind: 'noise-end', tau: o.tau } : { kind: 'uniform' };
}

function weightingOf(c: TrainConfig): LossWeighting {
  const o = c.objective;
  switch (o.lossWeighting) {
    case 'none': return { kind: 'none' };
    case 'p2': return { kind: 'p2', k: o.p2K, gamma: o.p2Gamma };
    case 'min-snr': return { kind: 'min-snr', gamma: o.minSnrGamma };
    case 'min-snr-code': return { kind: 'min-snr-code', gamma: o.minSnrGamma };
  }
}

export function buildObjective(c: TrainConfig, alphasCumprod: Float64Array): Objective {
  const T = alphasCumprod.length;
  const field = c.objective.targetWeights ? 'objective.targetWeights' : 'objective.tau';
  return {
    method: c.method,
    numTimesteps: T,
    targetLaw: TimestepDistribution.create(lawOf('target', c, T), T, field),
    replayLaw: usesBank(c.method)
      ? TimestepDistribution.create(lawOf('replay', c, T), T, c.objective.replayWeights ? 'objective.replayWeights' : 'objective.tauReplay')
      : null,
    mode: c.objective.timestepMode,
    mseWeights: lossWeightTable(weightingOf(c), alphasCumprod, 'objective.lossWeighting'),
    retentionWeight: c.objective.retentionWeight,
    replayRatio: c.objective.replayRatio,
  };
}

/** Target and replay counts of a batch: replay = floor(ratio * batch) as the reference (26/6 for 32). */
export function splitBatch(o: Objective, batchSize: number): { target: number; replay: number } {
  const replay = o.replayLaw ? Math.floor(batchSize * o.replayRatio) : 0;
  return { target: batchSize - replay, replay };
}

/** Timesteps of one sub-batch and, in weighting mode, their loss weights (else null). */
export function drawTimesteps(o: Objective, law: TimestepDistribution, n: number, generator?: Generator): { t: Tensor; weights: Tensor | null } {
  if (o.mode === 'sample') return { t: law.sample(n, { generator }), weights: null };
  return torch.scope(() => {
    const t = torch.randint(0, o.numTimesteps, [n], { generator });
    return { t, weights: law.lossWeights(t) };
  });
}

export interface CombinedLoss {
  /** The scalar to differentiate. */
  loss: Tensor;
  /** [n] per-sample losses after weighting (detached), for logs and t-bucket statistics. */
  perSample: Tensor;
  targetMean: Tensor;
  replayMean: Tensor | null;
}

/**
 * Per-sample loss = w_mse(t) * mse + vb (the weighting never touches the VB term, as the
 * reference), times the timestep weight in weighting mode; the first nTarget samples are the
 * target half.
 */
export function combineLosses(o: Objective, terms: { loss: Tensor; mse?: Tensor; vb?: Tensor }, t: Tensor,
  timestepWeights: Tensor | null, nTarget: number): CombinedLoss {
  return torch.scope(() => {
    let perSample = terms.loss;
    if (o.mseWeights) {
      if (!terms.mse) throw new Error('loss weighting needs the eps-MSE term (lossType mse)');
      const w = gatherWeights(o.mseWeights, t);
      perSample = terms.vb ? terms.mse.mul(w).add(terms.vb) : terms.mse.mul(w);
    }
    if (timestepWeights) perSample = perSample.mul(timestepWeights);
    const n = perSample.shape[0];
    const targetMean = perSample.slice(0, 0, nTarget).mean();
    let replayMean: Tensor | null = null;
    let loss = targetMean;
    if (nTarget < n) {
      replayMean = perSample.slice(0, nTarget, n).mean();
      loss = targetMean.add(replayMean.mul(o.retentionWeight));
    }
    return { loss, perSample: perSample.detach(), targetMean: targetMean.detach(), replayMean: replayMean?.detach() ?? null };
  });
}
