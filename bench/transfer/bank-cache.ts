// One knowledge bank per source model, shared by every target and run: sampled once (uniform
// source labels, guidance, DDPM or DDIM) into WORK/banks/<sha256 of the source>-<settings>/, grown when a
// later run needs more items (item i never changes, so a run replaying b items always sees the
// same first b), and resumed if a build was interrupted.
import * as path from 'path';
import * as fs from 'fs';
import { buildBank, BankSettings, readBankManifest } from '../../src/tuning/bank';
import { Device } from '../../src/torch';

export const BANK_SEED = 0;

export interface BankRequest {
  source: string;
  sourceConfig: string | null;
  sourceSha256: string;
  work: string;
  /** Items needed. */
  n: number;
  sampler: 'ddpm' | 'ddim';
  steps: number;
  cfg: number;
  device: Device;
  log: (m: string) => void;
}

export function bankDir(work: string, sourceSha256: string, sampler: 'ddpm' | 'ddim', steps: number, cfg: number): string {
  return path.join(work, 'banks', `${sourceSha256.slice(0, 16)}-${sampler}${steps}-cfg${cfg}-seed${BANK_SEED}`);
}

/** The bank folder, holding at least r.n complete items. */
export async function ensureBank(r: BankRequest): Promise<string> {
  const dir = bankDir(r.work, r.sourceSha256, r.sampler, r.steps, r.cfg);
  let have = 0;
  if (fs.existsSync(path.join(dir, 'manifest.json'))) {
    const m = readBankManifest(dir);
    have = m.settings.n;
    if (m.count >= r.n && m.count === m.settings.n) return dir;
  }
  const settings: BankSettings = {
    n: Math.max(r.n, have), labels: 'uniform', cfg: r.cfg, guideChannels: 3, sampler: r.sampler, steps: r.steps, eta: 0,
    seed: BANK_SEED, batchSize: 64, clip: true,
  };
  const started = Date.now();
  let last = 0;
  await buildBank({
    modelFile: r.source, configFile: r.sourceConfig ?? undefined, out: dir, settings, device: r.device, log: r.log,
    onStart: (done, total) => r.log(`knowledge bank: sampling items ${done}..${total} into ${dir}`),
    onProgress: (done, total) => {
      if (Date.now() - last > 30_000 || done === total) {
        last = Date.now();
        r.log(`knowledge bank: ${done}/${total} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
      }
    },
  });
  return dir;
}
