// Mapping a pretrained class-conditional DiT onto a target task's K classes.
//  - 'reuse' (the Diff-Tuning and DiffFit code): target class k uses pretrained row k and the null
//    label stays numClasses; the model is returned as it is.
//  - 'fresh': a new table of K class rows (DiT's init, normal with std 0.02) plus the pretrained null
//    row as row K, so the unconditional model, which the knowledge bank trains, is kept exactly.
// DiT's config is frozen (it fixes the architecture), so 'fresh' builds a new DiT with numClasses = K
// and copies every other tensor into it; the pretrained model is left untouched.
import * as torch from '../torch';
import { noGrad } from '../torch/autograd';
import { DiT } from './dit';
import { adapterKeys, LABEL_TABLE, peftMethodOf } from './peft';

export type LabelSpaceMode = 'reuse' | 'fresh';

/** The class id that means "no class" (classifier-free guidance, knowledge-bank replay). */
export function nullLabel(model: DiT): number {
  if (!(model.config.classDropoutProb > 0)) {
    throw new Error('nullLabel: the model has no null label (classDropoutProb is 0, so its label table has no guidance row)');
  }
  return model.config.numClasses;
}

/** Returns a DiT whose labels 0..K-1 are the target classes (see the file comment for the two modes). */
export function adaptLabelSpace(model: DiT, numTargetClasses: number, mode: LabelSpaceMode): DiT {
  const K = numTargetClasses;
  if (!Number.isInteger(K) || K <= 0) throw new Error(`adaptLabelSpace: numTargetClasses must be a positive integer, got ${K}`);
  if (mode === 'reuse') {
    if (K > model.config.numClasses) {
      throw new Error(`adaptLabelSpace: cannot reuse the pretrained label rows for ${K} target classes, the model has only ` +
        `${model.config.numClasses} (use mode 'fresh' for a new table)`);
    }
    return model;
  }
  if (mode !== 'fresh') throw new Error(`adaptLabelSpace: unknown mode '${mode}' (expected 'reuse' or 'fresh')`);
  if (peftMethodOf(model) !== null || adapterKeys(model).length) {
    throw new Error('adaptLabelSpace: adapt the label space before applyPeft (the new model is built as a plain DiT)');
  }
  const old = model.stateDict();
  const oldTable = old.get(LABEL_TABLE)!;
  const fresh = new DiT({ ...model.config, numClasses: K }, { initialize: false });
  fresh.to({ device: oldTable.device, dtype: model.x_embedder.proj.weight.dtype });
  const table = noGrad(() => torch.scope(() => {
    const rows = torch.empty([K, oldTable.shape[1]], { dtype: oldTable.dtype, device: oldTable.device });
    torch.nn.init.normal_(rows, 0, 0.02);
    const hasNull = model.config.classDropoutProb > 0;
    return hasNull ? torch.cat([rows, oldTable.slice(0, model.config.numClasses, model.config.numClasses + 1)], 0) : rows;
  }));
  const sd = new Map(old);
  sd.set(LABEL_TABLE, table);
  fresh.loadStateDict(sd, { what: 'the pretrained model with its new label table' });
  table.dispose();
  // Keep what the caller set on the pretrained model: which tensors train, and train/eval mode.
  for (const [name, p] of fresh.namedParameters()) {
    const was = old.get(name)!.requiresGrad;
    if (p.requiresGrad !== was) p.requiresGrad = was;
  }
  return fresh.train(model.training);
}
