// Demo step: how much of the source model each fine-tuning overwrote, as EWC under the source's
// diagonal Fisher on the knowledge bank (src/eval/ewc.ts; the paper's Figure 5b, small).
import { ewcDistance, EwcResult } from '../eval/ewc';
import { fisherOnBank } from '../eval/ewc-setup';
import { DiT } from '../models/dit';

export interface DemoEwc {
  /** Bank items in the Fisher. */
  items: number;
  full: EwcResult;
  'diff-tuning': EwcResult;
}

export async function demoEwc(o: { source: DiT; sourceFile: string; bankDir: string; items: number; seed: number; full: DiT; diffTuning: DiT; log: (m: string) => void }): Promise<DemoEwc> {
  const fisher = await fisherOnBank(o.source, o.bankDir, { items: o.items, draws: 1, seed: o.seed, labels: 'null', modelFile: o.sourceFile });
  try {
    const theta0 = new Map(o.source.namedParameters());
    const full = ewcDistance(fisher, theta0, new Map(o.full.namedParameters()));
    const diffTuning = ewcDistance(fisher, theta0, new Map(o.diffTuning.namedParameters()));
    o.log(`    EWC against the source: full ${full.total.toPrecision(3)}, Diff-Tuning ${diffTuning.total.toPrecision(3)} ` +
      `(ratio ${(diffTuning.total / full.total).toFixed(2)}; Fisher on ${fisher.items} bank items)`);
    return { items: fisher.items, full, 'diff-tuning': diffTuning };
  } finally {
    for (const v of fisher.values.values()) v.dispose();
  }
}
