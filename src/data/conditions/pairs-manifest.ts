// manifest.json of a condition-pair folder (OUT/images/<class>/<name>.png beside
// OUT/conditions/<class>/<name>.png): what was extracted, how, from where, and content hashes.
import * as path from 'path';
import { CONDITION_KINDS, ConditionKind, conditionChannels, isConditionKind, ResolvedConditionOptions } from './index';
import { readJsonObject } from '../../models/json-file';

export const PAIRS_MANIFEST = 'manifest.json';
export const PAIRS_FORMAT = 'difftune-condition-pairs/1';
export const IMAGES_DIR = 'images';
export const CONDITIONS_DIR = 'conditions';

export interface ConditionPairsManifest {
  format: typeof PAIRS_FORMAT;
  kind: ConditionKind;
  /** Channels of the condition PNGs: 1 (grey) or 3 (RGB). */
  channels: number;
  /** Every extractor option, defaults included. */
  options: ResolvedConditionOptions;
  /** Side of the square images and conditions (the center crop's size). */
  resolution: number;
  count: number;
  /** Pairs per class, in sorted class order (labels are positions in this order). */
  classes: Record<string, number>;
  source: {
    dir: string;
    /** SHA-256 over the sorted lines "<class>/<path> <sha256 of the file's bytes>\n". */
    contentHash: string;
  };
  /** SHA-256 over the sorted lines "<class>/<name>.png <pixelHash>\n" of each tree (pixelHash as in dataset.json). */
  hashes: { images: string; conditions: string };
  command: string;
}

/** Reads and checks DIR/manifest.json; errors name the file and the field. */
export function readPairsManifest(dir: string): ConditionPairsManifest {
  const file = path.join(dir, PAIRS_MANIFEST);
  let m: ConditionPairsManifest;
  try {
    m = readJsonObject(file) as unknown as ConditionPairsManifest;
  } catch (e) {
    throw new Error(`cannot read a condition-pair manifest: ${(e as Error).message}; build one with 'difftune datasets condition'`);
  }
  const bad = (field: string, want: string) => new Error(`${file}: field "${field}" must be ${want}, got ${JSON.stringify((m as unknown as Record<string, unknown>)[field])}`);
  if (m.format !== PAIRS_FORMAT) throw bad('format', `"${PAIRS_FORMAT}"`);
  if (!isConditionKind(m.kind)) throw bad('kind', `one of ${CONDITION_KINDS.join(', ')}`);
  if (m.channels !== conditionChannels(m.kind)) throw bad('channels', `${conditionChannels(m.kind)} for ${m.kind}`);
  if (!Number.isInteger(m.resolution) || m.resolution < 1) throw bad('resolution', 'a positive integer');
  if (!Number.isInteger(m.count) || m.count < 1) throw bad('count', 'a positive integer');
  if (typeof m.classes !== 'object' || m.classes === null) throw bad('classes', 'an object of counts per class');
  if (typeof m.hashes !== 'object' || m.hashes === null || typeof m.hashes.images !== 'string' || typeof m.hashes.conditions !== 'string') {
    throw bad('hashes', 'an object with "images" and "conditions" strings');
  }
  return m;
}
