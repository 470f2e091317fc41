// oxygen: the 32x32 PNG icons of KDE's Oxygen theme (Debian oxygen-icon-theme), glossy raster
// icons; class = the theme's context folder (actions, apps, devices, mimetypes, ...). Symbolic
// links are other names for icons already there and are skipped, so is the animations folder
// (a spinner sheet and one idle frame), and anything not 32x32; alpha is flattened onto white.
import * as fs from 'fs';
import * as path from 'path';
import { copyrightFile, debianPackage, packagePath } from './debian';
import { decodeFlat, mapInOrder, Rgb } from './render';
import type { BuildMeta, BuildOptions } from './types';
import { DatasetFolderWriter } from './write-folder';

export const OXYGEN_PACKAGE = 'oxygen-icon-theme';
export const OXYGEN_32_DIR = 'usr/share/icons/oxygen/base/32x32';
export const OXYGEN_EXCLUDED = ['animations'];
const SIDE = 32;

export async function buildOxygen(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const pkg = debianPackage(OXYGEN_PACKAGE, { cacheDir: o.cacheDir, log: o.log });
  const root = packagePath(pkg, OXYGEN_32_DIR);
  const jobs: { cls: string; file: string }[] = [];
  for (const cls of fs.readdirSync(root).sort()) {
    const dir = path.join(root, cls);
    if (!fs.statSync(dir).isDirectory() || OXYGEN_EXCLUDED.includes(cls)) continue;
    for (const name of fs.readdirSync(dir).sort()) {
      if (!name.endsWith('.png')) continue;
      if (fs.lstatSync(path.join(dir, name)).isSymbolicLink()) writer.skip('symlink');
      else jobs.push({ cls, file: path.join(dir, name) });
    }
  }
  await mapInOrder(
    jobs,
    o.concurrency ?? 4,
    async (job): Promise<Rgb | Error> => decodeFlat(fs.readFileSync(job.file), job.file).catch((e: Error) => e),
    (img, job) => {
      if (img instanceof Error) {
        writer.skip('decodeFailed');
        o.log?.(`skipped ${job.file}: ${img.message}`);
      } else if (img.width !== SIDE || img.height !== SIDE) {
        writer.skip('not32x32');
      } else {
        writer.add({ cls: job.cls, name: path.basename(job.file, '.png'), pixels: img.pixels, width: SIDE, height: SIDE, channels: 3 });
      }
    },
  );
  return {
    description: 'Oxygen icon theme (KDE), its 32x32 PNGs flattened onto white; class = context folder',
    sources: [{ kind: 'debian', package: pkg.name, version: pkg.version, licence: 'LGPL-3.0-or-later', author: 'The Oxygen Team (KDE)', url: 'https://invent.kde.org/frameworks/oxygen-icons5', images: writer.count, copyrightFile: copyrightFile(pkg) }],
    attribution: `# oxygen: attribution

Icons of the Oxygen icon theme (KDE; David Miller, David Vignoni, Johann Ollivier Lapeyre, Kenneth
Wimer, Nuno Pinheiro, Riccardo Iaconelli and others), https://invent.kde.org/frameworks/oxygen-icons5,
licensed under the GNU LGPL version 3 or later. Taken from the Debian package ${pkg.name} ${pkg.version}
(${OXYGEN_32_DIR}); transparent pixels were flattened onto white, nothing else was changed. The
images remain under the LGPL-3+.
`,
    background: 'white',
    notes: ['class = context folder of the theme', `left out: symbolic links (aliases), non-32x32 files, the ${OXYGEN_EXCLUDED.join(', ')} folder`],
  };
}
