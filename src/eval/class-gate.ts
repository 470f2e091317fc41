// The source model's quality gate: its class-conditional samples must be classified as the class
// they were asked for, by the domain's own classifier, at least `minShare` as often as held-out
// real images are (a model that draws its classes recognisably has knowledge worth keeping).
import * as torch from '../torch';
import { Tensor } from '../torch';
import { IconClassifier } from '../models/icon-classifier';

/** The share of the real images' accuracy that samples must reach (the testbed issue's 75%). */
export const GATE_MIN_SHARE = 0.75;

export interface GateResult {
  /** Top-1 accuracy of the classifier on the samples, against the labels they were sampled with. */
  accuracy: number;
  /** Its accuracy on the held-out real images. */
  realAccuracy: number;
  /** accuracy / realAccuracy. */
  share: number;
  minShare: number;
  passed: boolean;
  samples: number;
  realImages: number;
  /** Sample accuracy per class (in the classifier's class order; NaN where no sample asked for it). */
  perClass: number[];
}

/**
 * Predicted classes of images (uint8 [N, 3, H, W], or float in [-1, 1]), in batches, as an array.
 * The classifier is put in eval mode.
 */
export function classify(model: IconClassifier, images: Tensor, batch = 500): number[] {
  model.eval();
  const out: number[] = [];
  const device = model.head.weight.device;
  for (let start = 0; start < images.shape[0]; start += batch) {
    const part = torch.noGrad(() => torch.scope(() => {
      let x = images.narrow(0, start, Math.min(batch, images.shape[0] - start)).to({ device });
      if (x.dtype === 'uint8') x = x.float().div(127.5).sub(1);
      return model.forward(x).argmax(1).toArray() as number[];
    }));
    out.push(...part);
  }
  return out;
}

/** Accuracy overall and per class of predictions against labels (both in the classifier's class indices). */
export function accuracyOf(predicted: number[], labels: number[], numClasses: number): { accuracy: number; perClass: number[] } {
  if (predicted.length !== labels.length || !labels.length) throw new RangeError(`accuracyOf: ${predicted.length} predictions for ${labels.length} labels`);
  const hit = new Array<number>(numClasses).fill(0);
  const seen = new Array<number>(numClasses).fill(0);
  let correct = 0;
  labels.forEach((y, i) => {
    seen[y]++;
    if (predicted[i] === y) { hit[y]++; correct++; }
  });
  return { accuracy: correct / labels.length, perClass: hit.map((h, k) => (seen[k] ? h / seen[k] : NaN)) };
}

export function gateResult(sample: { predicted: number[]; labels: number[] }, real: { predicted: number[]; labels: number[] },
  numClasses: number, minShare = GATE_MIN_SHARE): GateResult {
  const s = accuracyOf(sample.predicted, sample.labels, numClasses);
  const r = accuracyOf(real.predicted, real.labels, numClasses);
  const share = s.accuracy / r.accuracy;
  return {
    accuracy: s.accuracy, realAccuracy: r.accuracy, share, minShare, passed: share >= minShare,
    samples: sample.labels.length, realImages: real.labels.length, perClass: s.perClass,
  };
}

/**
 * For each model class name, the classifier's index of the same name: the model and the
 * classifier must both know every class the gate asks for.
 */
export function classIndexMap(modelClasses: string[], classifierClasses: string[], what: string): number[] {
  return modelClasses.map((name) => {
    const k = classifierClasses.indexOf(name);
    if (k < 0) throw new Error(`${what}: class '${name}' is not one of the classifier's ${classifierClasses.length} classes (${classifierClasses.slice(0, 5).join(', ')}, ...)`);
    return k;
  });
}
