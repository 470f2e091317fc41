// `difftune datasets condition`: condition pairs (image, extracted condition) for ControlNet
// training from a class-subfolder image folder (src/data/conditions/build-pairs.ts).
import { buildConditionPairs } from '../data/conditions/build-pairs';
import { checkConditionKind, CONDITION_KINDS, ConditionOptions } from '../data/conditions/index';
import { cuda, Device } from '../torch';
import { parseFlags } from './args';

const SUMMARY = [
  'Writes OUT/images/<class>/<name>.png (the center-cropped image), OUT/conditions/<class>/<name>.png (its condition)',
  `and OUT/manifest.json, from a class-subfolder image folder. Kinds: ${CONDITION_KINDS.join(', ')}.`,
  'Options (--options k=v,...): canny/sketch sigma, low, high; segmentation clusters, iterations; lowres factor, upsample.',
].join('\n');

/** "low=0.1,high=0.2,upsample=bilinear" -> { low: 0.1, high: 0.2, upsample: 'bilinear' }. */
function parseOptions(text: string): ConditionOptions {
  const out: Record<string, number | string> = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`datasets condition: --options expects key=value pairs separated by commas, got '${part}'`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    out[key] = value !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
  }
  return out as ConditionOptions;
}

export async function runDatasetsCondition(argv: string[]): Promise<void> {
  const flags = parseFlags('datasets condition', SUMMARY, {
    kind: { type: 'string', help: `condition to extract: ${CONDITION_KINDS.join(', ')}` },
    in: { type: 'string', help: 'class-subfolder image folder (IN/<class>/<images>)' },
    out: { type: 'string', help: 'output folder (replaced if it holds an earlier build)' },
    resolution: { type: 'number', default: 0, help: 'side of the center crop (0: the shorter side of the first image)' },
    options: { type: 'string', default: '', help: 'extractor options as key=value,... (defaults depend on the kind and resolution)' },
    batch: { type: 'number', default: 32, help: 'images extracted at once' },
    device: { type: 'string', default: 'cpu', help: 'cpu or cuda' },
  }, argv);
  if (!flags) return;
  const kind = checkConditionKind(flags.kind, 'datasets condition: --kind');
  if (!Number.isInteger(flags.resolution) || flags.resolution < 0) throw new Error(`datasets condition: --resolution must be a whole number >= 0, got ${flags.resolution}`);
  if (!Number.isInteger(flags.batch) || flags.batch < 1) throw new Error(`datasets condition: --batch must be a whole number >= 1, got ${flags.batch}`);
  if (flags.device !== 'cpu' && !/^cuda(:\d+)?$/.test(flags.device)) throw new Error(`datasets condition: --device must be cpu, cuda or cuda:N, got '${flags.device}'`);
  if (flags.device !== 'cpu' && !cuda.isAvailable()) throw new Error(`datasets condition: --device ${flags.device}: CUDA is not available in this build`);
  const started = Date.now();
  const manifest = await buildConditionPairs({
    kind,
    input: flags.in,
    out: flags.out,
    resolution: flags.resolution || undefined,
    options: parseOptions(flags.options),
    batchSize: flags.batch,
    device: flags.device as Device,
    command: ['difftune datasets condition', ...argv].join(' '),
    log: (msg) => console.error(msg),
  });
  const opts = Object.entries(manifest.options).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`condition ${kind}${opts ? ` (${opts})` : ''}: ${manifest.count} pairs in ${Object.keys(manifest.classes).length} classes at ${manifest.resolution} px -> ${flags.out} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
