// openclipart: public-domain clip art (Debian openclipart-svg), each drawing rendered whole to
// 32x32 on white with sharp; class = top-level category folder. The shapes, special and
// buttons folders (stars, gradients, decorative frames) are left out, as are symbolic links
// (other names for drawings already there). Drawings librsvg cannot render, or that render
// to plain white (most only link a raster image that is not in the package), are counted and
// skipped.
import * as fs from 'fs';
import * as path from 'path';
import { copyrightFile, debianPackage, packagePath } from './debian';
import { mapInOrder, renderTrimmed, Rgb } from './render';
import type { BuildMeta, BuildOptions } from './types';
import { DatasetFolderWriter } from './write-folder';

export const OPENCLIPART_PACKAGE = 'openclipart-svg';
export const OPENCLIPART_DIR = 'usr/share/openclipart/svg';
export const OPENCLIPART_EXCLUDED = ['buttons', 'shapes', 'special'];
const SIDE = 32;

/** Every .svg under dir (recursively, sorted, symbolic links counted and skipped). */
function listSvgs(dir: string, writer: DatasetFolderWriter, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isSymbolicLink()) {
      if (e.name.endsWith('.svg')) writer.skip('symlink');
    } else if (e.isDirectory()) listSvgs(p, writer, out);
    else if (e.name.endsWith('.svg')) out.push(p);
  }
  return out;
}

export async function buildOpenclipart(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const pkg = debianPackage(OPENCLIPART_PACKAGE, { cacheDir: o.cacheDir, log: o.log });
  const root = packagePath(pkg, OPENCLIPART_DIR);
  const jobs: { cls: string; file: string }[] = [];
  for (const cls of fs.readdirSync(root).sort()) {
    if (!fs.statSync(path.join(root, cls)).isDirectory()) continue;
    if (OPENCLIPART_EXCLUDED.includes(cls)) continue;
    for (const file of listSvgs(path.join(root, cls), writer)) jobs.push({ cls, file });
  }
  o.log?.(`openclipart: rendering ${jobs.length} drawings`);
  let done = 0;
  await mapInOrder(
    jobs,
    o.concurrency ?? 4,
    async (job): Promise<Rgb | null | Error> => renderTrimmed(fs.readFileSync(job.file), SIDE, job.file).catch((e: Error) => e),
    (img, job) => {
      if (img instanceof Error) {
        writer.skip('renderFailed');
        o.log?.(`skipped ${path.relative(root, job.file)}: ${img.message.split('\n')[0]}`);
      } else if (img === null) {
        writer.skip('blank');
      } else {
        const name = path.relative(path.join(root, job.cls), job.file).replace(/\.svg$/, '').replace(/[\\/]/g, '--');
        writer.add({ cls: job.cls, name, pixels: img.pixels, width: SIDE, height: SIDE, channels: 3 });
      }
      if (++done % 1000 === 0) o.log?.(`${done}/${jobs.length} drawings rendered`);
    },
  );
  return {
    description: 'Open Clip Art Library drawings (public domain), rendered whole to 32x32 RGB on white; class = category',
    sources: [{ kind: 'debian', package: pkg.name, version: pkg.version, licence: 'public domain (Creative Commons Public Domain Dedication)', author: 'Open Clip Art Library contributors', url: 'https://openclipart.org', images: writer.count, copyrightFile: copyrightFile(pkg) }],
    attribution: `# openclipart: attribution

Drawings from the Open Clip Art Library (https://openclipart.org), dedicated to the public domain by
their authors (Creative Commons Public Domain Dedication). Taken from the Debian package ${pkg.name}
${pkg.version} (${OPENCLIPART_DIR}, without the ${OPENCLIPART_EXCLUDED.join(', ')} folders) and rendered by
difftune to 32x32 pixels (whole drawing, aspect kept, centred) on white. Attribution is not required;
the upstream authors of each drawing are named in the openclipart archives.
`,
    background: 'white',
    notes: [`class = top-level category folder; ${OPENCLIPART_EXCLUDED.join(', ')} are left out`, 'file name = path below the category, "/" as "--"', 'symbolic links skipped; drawings that fail to render or render plain white are counted in skipped.renderFailed / skipped.blank'],
  };
}
