// Icon and emoji datasets from the @iconify-json/* npm packages (dev dependencies), each icon
// rendered to 32x32 RGB on white with sharp:
//   iconnet  the broad source ("ImageNet" of this project): the multicolour sets in ICONNET_SETS,
//            class = icon set;
//   twemoji  held-out target, class = emoji category (the set's own metadata.json groups);
//   flags    held-out target: four flag sets, class = set.
// Only an icon set's own icons are used, not its aliases (other names for the same drawing;
// the few flipped aliases are skipped too). Hidden icons (kept by iconify for old names) and
// emoji skin-tone variants are left out.
import * as fs from 'fs';
import * as path from 'path';
import { isBlankWhite, mapInOrder, renderSizedSvg, Rgb } from './render';
import type { BuildMeta, BuildOptions } from './types';
import { DatasetFolderWriter, DatasetSource, safeName } from './write-folder';

export const ICON_SIZE = 32;

/** A set used by a dataset, with the licence its package declares (checked at build time). */
export interface IconSetSpec {
  prefix: string;
  /** SPDX id of info.json's license: the build fails if the package's differs (a relicensed set must be reviewed). */
  licence: string;
}

/**
 * iconnet's sets: every multicolour ("palette") iconify set published as its own package,
 * except those listed in ICONNET_EXCLUDED. Licences as in each package's info.json.
 */
export const ICONNET_SETS: readonly IconSetSpec[] = [
  { prefix: 'catppuccin', licence: 'MIT' },
  { prefix: 'emojione', licence: 'CC-BY-4.0' },
  { prefix: 'emojione-v1', licence: 'CC-BY-SA-4.0' },
  { prefix: 'flat-color-icons', licence: 'MIT' },
  { prefix: 'flat-ui', licence: 'MIT' },
  { prefix: 'fluent-color', licence: 'MIT' },
  { prefix: 'fluent-emoji-flat', licence: 'MIT' },
  { prefix: 'fxemoji', licence: 'Apache-2.0' },
  { prefix: 'icon-park', licence: 'Apache-2.0' },
  { prefix: 'marketeq', licence: 'MIT' },
  { prefix: 'material-icon-theme', licence: 'MIT' },
  { prefix: 'meteocons', licence: 'MIT' },
  { prefix: 'noto', licence: 'Apache-2.0' },
  { prefix: 'noto-v1', licence: 'Apache-2.0' },
  { prefix: 'openmoji', licence: 'CC-BY-SA-4.0' },
  { prefix: 'streamline-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-cyber-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-emojis', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-flex-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-freehand-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-kameleon-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-plump-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-sharp-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-stickies-color', licence: 'CC-BY-4.0' },
  { prefix: 'streamline-ultimate-color', licence: 'CC-BY-4.0' },
  { prefix: 'vscode-icons', licence: 'MIT' },
];

/** Multicolour sets kept out of iconnet, and why (also written to its ATTRIBUTION.md). */
export const ICONNET_EXCLUDED: Readonly<Record<string, string>> = {
  logos: 'company and product logos (trademarks)',
  selfhst: 'logos of self-hosted software (trademarks)',
  'thesvg-color': 'brand logos (trademarks)',
  'token-branded': 'cryptocurrency token logos (trademarks)',
  'cryptocurrency-color': 'cryptocurrency logos (trademarks)',
  devicon: 'programming language and developer tool logos (trademarks)',
  'skill-icons': 'technology logos (trademarks)',
  unjs: 'logos of the UnJS projects (trademarks)',
  'fluent-emoji': '3D emoji: a very large package of big gradient drawings',
  twemoji: 'held out: the twemoji target',
  'circle-flags': 'held out: the flags target',
  flag: 'held out: the flags target',
  flagpack: 'held out: the flags target',
  cif: 'held out: the flags target',
  'glyphs-poly, gcp, k8s': 'palette sets that are only in the 104 MB @iconify/json bundle, not in a package of their own',
  'any CC BY-NC set': 'non-commercial licences',
};

export const TWEMOJI_SET: IconSetSpec = { prefix: 'twemoji', licence: 'CC-BY-4.0' };

export const FLAG_SETS: readonly IconSetSpec[] = [
  { prefix: 'cif', licence: 'CC0-1.0' },
  { prefix: 'circle-flags', licence: 'MIT' },
  { prefix: 'flag', licence: 'MIT' },
  { prefix: 'flagpack', licence: 'MIT' },
];

// ---- iconify JSON ----

interface IconData {
  body: string;
  left?: number;
  top?: number;
  width?: number;
  height?: number;
  rotate?: number;
  hFlip?: boolean;
  vFlip?: boolean;
  hidden?: boolean;
}

interface IconSetJson {
  prefix: string;
  icons: Record<string, IconData>;
  left?: number;
  top?: number;
  width?: number;
  height?: number;
}

interface IconSetInfo {
  name: string;
  author?: { name?: string; url?: string };
  license?: { title?: string; spdx?: string; url?: string };
  palette?: boolean;
}

export interface LoadedIconSet {
  spec: IconSetSpec;
  version: string;
  info: IconSetInfo;
  icons: IconSetJson;
  /** Unicode sequence (hex, '-'-joined) -> icon name, when the package has chars.json. */
  chars: Record<string, string>;
  /** Category -> icon names, when the package's metadata.json has categories. */
  categories: Record<string, string[]>;
}

function readJson<T>(file: string): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new Error(`${file}: cannot read JSON (${(e as Error).message})`);
  }
}

/** Folder of an installed @iconify-json/<prefix> package. */
export function iconSetPackageDir(prefix: string): string {
  const pkg = `@iconify-json/${prefix}`;
  try {
    return path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new Error(`npm package ${pkg} is not installed: it is a dev dependency of difftune, run 'npm ci' (or 'npm install') in the repository`);
  }
}

/** Loads one set and checks it is the multicolour set, under the licence, that the spec expects. */
export function loadIconSet(spec: IconSetSpec): LoadedIconSet {
  const dir = iconSetPackageDir(spec.prefix);
  const pkg = readJson<{ version: string }>(path.join(dir, 'package.json'));
  const info = readJson<IconSetInfo>(path.join(dir, 'info.json'));
  const icons = readJson<IconSetJson>(path.join(dir, 'icons.json'));
  const where = `@iconify-json/${spec.prefix}@${pkg.version}`;
  const spdx = info.license?.spdx ?? '';
  if (/NC/i.test(spdx) || /non-?commercial/i.test(info.license?.title ?? '')) {
    throw new Error(`${where}: licence ${spdx || info.license?.title} is non-commercial; such sets are excluded`);
  }
  if (spdx !== spec.licence) {
    throw new Error(`${where}: info.json declares licence ${JSON.stringify(spdx)}, expected ${spec.licence}; review the new licence and update the set list in src/data/datasets/iconify.ts`);
  }
  if (info.palette !== true) throw new Error(`${where}: not a multicolour (palette) set`);
  if (!icons || typeof icons.icons !== 'object') throw new Error(`${where}: icons.json has no "icons" object`);
  const chars = fs.existsSync(path.join(dir, 'chars.json')) ? readJson<Record<string, string>>(path.join(dir, 'chars.json')) : {};
  const metaFile = path.join(dir, 'metadata.json');
  const categories = fs.existsSync(metaFile) ? readJson<{ categories?: Record<string, string[]> }>(metaFile).categories ?? {} : {};
  return { spec, version: pkg.version, info, icons, chars, categories };
}

/**
 * A standalone SVG of one icon, width = height = size. A non-square icon's view box is widened
 * (or heightened) symmetrically, so it is drawn at its aspect ratio, centred, with empty margins.
 */
export function iconSvg(set: Pick<IconSetJson, 'left' | 'top' | 'width' | 'height'>, icon: IconData, size: number): string {
  const left = icon.left ?? set.left ?? 0;
  const top = icon.top ?? set.top ?? 0;
  const width = icon.width ?? set.width ?? 16;
  const height = icon.height ?? set.height ?? 16;
  const side = Math.max(width, height);
  const viewBox = [left - (side - width) / 2, top - (side - height) / 2, side, side].join(' ');
  return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${size}" height="${size}" viewBox="${viewBox}">${icon.body}</svg>`;
}

// ---- skin tones ----

const TONES = ['light', 'medium-light', 'medium', 'medium-dark', 'dark'];
const TONE_SUFFIX = /(?:-(?:light|medium|dark))+$/;

/**
 * Names of skin-tone variants among an emoji set's icons. Sets spell them differently:
 * "...-medium-skin-tone" (twemoji, noto, openmoji, emojione), "...-tone3" (noto), a
 * U+1F3FB..U+1F3FF modifier in the icon's code points (chars.json), or a bare "-light" ...
 * "-dark" suffix (fluent-emoji-flat). A bare suffix counts only when the stem has all five
 * tone variants, so "police-car-light" or "vertical-traffic-light" stay.
 */
export function skinToneVariants(names: readonly string[], chars: Record<string, string> = {}): Set<string> {
  const all = new Set(names);
  const out = new Set<string>();
  const byModifier = new Set<string>();
  for (const [seq, name] of Object.entries(chars)) if (/(^|-)1f3f[b-f](-|$)/i.test(seq)) byModifier.add(name);
  for (const name of names) {
    if (/(^|-)skin-tone(-|$)/.test(name) || /(^|-)tone-?[1-5](-|$)/.test(name) || /(^|-)1f3f[b-f](-|$)/i.test(name) || byModifier.has(name)) {
      out.add(name);
      continue;
    }
    const m = TONE_SUFFIX.exec(name);
    if (!m || m.index === 0) continue;
    const stem = name.slice(0, m.index);
    if (TONES.every((t) => all.has(`${stem}-${t}`))) out.add(name);
  }
  return out;
}

// ---- building ----

interface IconJob {
  set: LoadedIconSet;
  name: string;
  cls: string;
}

/** The icons of a set that go into a dataset, in name order, counting what is left out on the writer. */
function selectIcons(set: LoadedIconSet, writer: DatasetFolderWriter, dropSkinTones: boolean): string[] {
  const entries = Object.entries(set.icons.icons).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const visible: string[] = [];
  for (const [name, icon] of entries) {
    if (icon.hidden) writer.skip('hidden');
    else if (icon.rotate || icon.hFlip || icon.vFlip) writer.skip('transformed');
    else visible.push(name);
  }
  if (!dropSkinTones) return visible;
  const tones = skinToneVariants(visible, set.chars);
  writer.skip('skinTone', tones.size);
  return visible.filter((n) => !tones.has(n));
}

/** Renders the jobs in order into the writer; failures are counted (renderFailed) and logged, not fatal. */
async function renderIcons(jobs: IconJob[], writer: DatasetFolderWriter, o: BuildOptions): Promise<Map<LoadedIconSet, number>> {
  const added = new Map<LoadedIconSet, number>();
  let done = 0;
  await mapInOrder(
    jobs,
    o.concurrency ?? 4,
    async (job): Promise<Rgb | Error> => {
      const what = `${job.set.spec.prefix}:${job.name}`;
      try {
        return await renderSizedSvg(iconSvg(job.set.icons, job.set.icons.icons[job.name], ICON_SIZE), ICON_SIZE, what);
      } catch (e) {
        return e as Error;
      }
    },
    (result, job) => {
      if (result instanceof Error) {
        writer.skip('renderFailed');
        o.log?.(`skipped ${job.set.spec.prefix}:${job.name}: ${result.message}`);
      } else if (isBlankWhite(result.pixels)) {
        writer.skip('blank');
      } else if (writer.add({ cls: job.cls, name: job.name, pixels: result.pixels, width: ICON_SIZE, height: ICON_SIZE, channels: 3 }) === 'added') {
        added.set(job.set, (added.get(job.set) ?? 0) + 1);
      }
      if (++done % 5000 === 0) o.log?.(`${done}/${jobs.length} icons rendered`);
    },
  );
  return added;
}

function sourceOf(set: LoadedIconSet, images: number): DatasetSource {
  return {
    kind: 'npm',
    package: `@iconify-json/${set.spec.prefix}`,
    version: set.version,
    licence: set.spec.licence,
    author: set.info.author?.name,
    url: set.info.author?.url,
    images,
  };
}

function attribution(title: string, intro: string, sets: LoadedIconSet[], added: Map<LoadedIconSet, number>, extra = ''): string {
  const rows = sets.map((s) => {
    const author = s.info.author?.url ? `[${s.info.author.name}](${s.info.author.url})` : s.info.author?.name ?? 'unknown';
    const licence = s.info.license?.url ? `[${s.info.license.title ?? s.spec.licence}](${s.info.license.url})` : s.info.license?.title ?? s.spec.licence;
    return `| ${s.info.name} (\`${s.spec.prefix}\`) | ${author} | ${licence} | @iconify-json/${s.spec.prefix}@${s.version} | ${added.get(s) ?? 0} |`;
  });
  const shareAlike = sets.filter((s) => /SA/.test(s.spec.licence)).map((s) => s.spec.prefix);
  const sa = shareAlike.length
    ? `\nImages from ${shareAlike.join(', ')} are adaptations under CC BY-SA 4.0 and stay under that licence.\n`
    : '';
  return `# ${title}

${intro}

Each image is one icon of the sets below, rasterised by difftune to ${ICON_SIZE}x${ICON_SIZE} pixels (aspect ratio kept, centred) and flattened onto a white background; nothing
else was changed. Icon data comes from the Iconify project's per-set npm packages.

| Icon set | Author | Licence | Package | Images |
|---|---|---|---|---|
${rows.join('\n')}
${sa}${extra}`;
}

/** iconnet: the broad source dataset, class = icon set. */
export async function buildIconnet(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const sets = ICONNET_SETS.map(loadIconSet);
  const jobs: IconJob[] = [];
  for (const set of sets) for (const name of selectIcons(set, writer, true)) jobs.push({ set, name, cls: set.spec.prefix });
  o.log?.(`iconnet: rendering ${jobs.length} icons from ${sets.length} sets`);
  const added = await renderIcons(jobs, writer, o);
  const excluded = Object.entries(ICONNET_EXCLUDED).map(([k, v]) => `- \`${k}\`: ${v}`).join('\n');
  return {
    description: `Multicolour icons and emoji from ${sets.length} Iconify sets, ${ICON_SIZE}x${ICON_SIZE} RGB on white; class = icon set (the broad source dataset)`,
    sources: sets.map((s) => sourceOf(s, added.get(s) ?? 0)),
    attribution: attribution('iconnet: attribution', 'The broad source dataset of difftune: multicolour icon and emoji sets, one class per set.', sets, added,
      `\nLeft out: hidden icons, aliases, and emoji skin-tone variants. Sets not used:\n\n${excluded}\n`),
    background: 'white',
    notes: [
      'class = iconify set prefix',
      'hidden icons, aliases and skin-tone variants are left out',
      `excluded sets: ${Object.keys(ICONNET_EXCLUDED).join('; ')}`,
    ],
  };
}

/** twemoji: a held-out target, class = Unicode emoji category as listed in the set's metadata.json. */
export async function buildTwemoji(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const set = loadIconSet(TWEMOJI_SET);
  const categoryOf = new Map<string, string>();
  for (const [cat, names] of Object.entries(set.categories)) for (const n of names) if (!categoryOf.has(n)) categoryOf.set(n, cat);
  if (categoryOf.size === 0) throw new Error(`@iconify-json/twemoji@${set.version}: metadata.json has no categories (needed as class labels)`);
  const jobs: IconJob[] = [];
  for (const name of selectIcons(set, writer, true)) {
    const cat = categoryOf.get(name);
    if (cat === undefined) writer.skip('uncategorised');
    else jobs.push({ set, name, cls: safeName(cat) });
  }
  const added = await renderIcons(jobs, writer, o);
  return {
    description: `Twitter emoji (twemoji), ${ICON_SIZE}x${ICON_SIZE} RGB on white; class = emoji category (held out of iconnet)`,
    sources: [sourceOf(set, added.get(set) ?? 0)],
    attribution: attribution('twemoji: attribution', 'A target dataset of difftune: Twemoji, one class per Unicode emoji category.', [set], added,
      '\nLeft out: hidden icons, aliases and skin-tone variants.\n'),
    background: 'white',
    notes: ['class = emoji category from the package metadata.json (Smileys & Emotion, People & Body, ...)', 'hidden icons, aliases and skin-tone variants are left out'],
  };
}

/** flags: a held-out target, four flag sets, class = set. */
export async function buildFlags(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const sets = FLAG_SETS.map(loadIconSet);
  const jobs: IconJob[] = [];
  for (const set of sets) for (const name of selectIcons(set, writer, false)) jobs.push({ set, name, cls: set.spec.prefix });
  const added = await renderIcons(jobs, writer, o);
  return {
    description: `Flags from ${sets.length} Iconify sets, ${ICON_SIZE}x${ICON_SIZE} RGB on white (non-square flags letterboxed); class = set (held out of iconnet)`,
    sources: sets.map((s) => sourceOf(s, added.get(s) ?? 0)),
    attribution: attribution('flags: attribution', 'A target dataset of difftune: flag icon sets, one class per set.', sets, added, '\nLeft out: hidden icons and aliases.\n'),
    background: 'white',
    notes: ['class = iconify set prefix', 'non-square flags are drawn at their aspect ratio, centred, on white'],
  };
}
