// The end product of a run: the EMA weights as model.safetensors + model.json that `difftune
// sample` (and the next run) load like any DiT. LoRA is merged into the base weights first;
// PEFT runs also write their trained tensors alone (peft.safetensors), the small file to share.
import * as path from 'path';
import { DiT } from '../models/dit';
import { saveDiT } from '../models/dit-io';
import { applyPeft, mergeLoRA, peftStateDict } from '../models/peft';
import * as torch from '../torch';
import { Tensor } from '../torch';
import { TrainConfig } from './config';
import { Ema } from './ema';

export function exportFinetuned(c: TrainConfig, model: DiT, ema: Ema): string {
  const file = path.join(c.run.out, 'model.safetensors');
  const meta = { method: c.method, peft: c.peft.method };
  ema.swapInto(model, () => {
    if (c.peft.method !== 'none') torch.saveSafetensors(path.join(c.run.out, 'peft.safetensors'), peftStateDict(model), meta);
    if (c.peft.method !== 'lora') {
      if (c.peft.method === 'adaptformer') {
        // Adapters are nonlinear, so they cannot fold into the base weights: the file keeps them.
        saveDiT(file, model, meta, { method: 'adaptformer', adapterDim: c.peft.adapterDim, adapterScale: c.peft.adapterScale });
      } else {
        saveDiT(file, model, meta);
      }
      return;
    }
    const merged = torch.scope(() => {
      const sd = new Map<string, Tensor>();
      for (const [k, t] of model.stateDict()) sd.set(k, t.detach().clone().to({ device: 'cpu' }).keep());
      const copy = new DiT(model.config, { initialize: false });
      applyPeft(copy, { method: 'lora', loraRank: c.peft.loraRank, loraAlpha: c.peft.loraAlpha ?? undefined });
      copy.loadStateDict(sd);
      for (const t of sd.values()) t.dispose();
      mergeLoRA(copy);
      return copy;
    });
    saveDiT(file, merged, meta);
  });
  return file;
}
