// The demo's knowledge bank: sampled once from the source model into OUT/bank and reused by later
// demo runs. An interrupted bank is resumed (buildBank); one made from another model or with other
// settings is rebuilt rather than refused, because the demo owns that folder.
import * as fs from 'fs';
import * as path from 'path';
import { ProgressBar } from '../report/progress';
import { buildBank, BankManifest, BankSettings, readBankManifest } from '../tuning/bank';
import { MANIFEST_FILE, recordedSettings, settingDifferences } from '../tuning/bank-manifest';

export interface DemoBankOptions {
  modelFile: string;
  modelSha256: string;
  numClasses: number;
  dir: string;
  settings: BankSettings;
  log: (m: string) => void;
}

/** Whether the bank in dir (if any) was made from this model with these settings (a smaller complete one can grow). */
function reusable(o: DemoBankOptions): boolean {
  if (!fs.existsSync(path.join(o.dir, MANIFEST_FILE))) return true; // nothing there: a fresh build
  let m: BankManifest;
  try {
    m = readBankManifest(o.dir);
  } catch {
    return false;
  }
  if (m.model.sha256 !== o.modelSha256) return false;
  const wanted = recordedSettings(o.settings, o.numClasses, m.storage);
  return settingDifferences(m.settings, wanted, ['n']).length === 0 && m.settings.n <= o.settings.n;
}

export async function demoBank(o: DemoBankOptions): Promise<BankManifest> {
  const force = !reusable(o);
  if (force) o.log(`    ${o.dir} holds a bank of another model or other settings: rebuilding it`);
  let bar: ProgressBar | null = null;
  let done = 0;
  const manifest = await buildBank({
    modelFile: o.modelFile, out: o.dir, settings: o.settings, force,
    log: (line) => o.log(`    ${line}`),
    onStart: (already, total) => {
      done = already;
      if (already < total) o.log(`    sampling ${total - already} of ${total} items (${o.settings.sampler} ${o.settings.steps} steps, cfg ${o.settings.cfg})`);
      bar = new ProgressBar({ total, label: 'bank', initial: already });
    },
    onStep: (step, steps) => {
      const batch = Math.min(o.settings.batchSize, o.settings.n - done);
      bar?.update(done + Math.floor((step / steps) * batch));
    },
    onProgress: (d) => {
      done = d;
      bar?.update(d);
    },
  });
  (bar as ProgressBar | null)?.done();
  return manifest;
}
