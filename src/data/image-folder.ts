// A class-per-folder image tree, indexed as torchvision's ImageFolder does it, so labels and
// order agree with the reference training script: classes are the root's immediate sub-folders
// in sorted order (label = position), and each class's images are found recursively in the
// order of Python's sorted(os.walk(class_dir, followlinks=True)) with each folder's files sorted.
// Only the extension list differs: ours is the set sharp + our BMP reader decode (torchvision's
// has .ppm/.pgm and lacks .gif/.svg).
import * as fs from 'fs';
import * as path from 'path';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.svg', '.tif', '.tiff'] as const;

export interface ImageFolderIndex {
  root: string;
  classes: string[];
  items: { file: string; label: number }[];
}

export function isImageFile(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Python's str ordering (by code point); JS's default sort compares UTF-16 units, which differs above U+FFFF. */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** Is this entry a folder, following symbolic links as os.scandir's is_dir() does (broken links are not). */
function isDir(dir: string, entry: fs.Dirent): boolean {
  if (entry.isDirectory()) return true;
  if (!entry.isSymbolicLink()) return false;
  try {
    return fs.statSync(path.join(dir, entry.name)).isDirectory();
  } catch {
    return false;
  }
}

function listDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw new Error(`scanImageFolder: cannot read folder ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

/** Every folder under dir (dir included) with the files directly in it, as os.walk(followlinks=True). */
function walk(dir: string, ancestors: Set<string>, out: { dir: string; files: string[] }[]): void {
  const real = fs.realpathSync(dir);
  if (ancestors.has(real)) return; // a link back up the tree: os.walk would loop until the path is too long
  ancestors.add(real);
  const files: string[] = [];
  const subdirs: string[] = [];
  for (const entry of listDir(dir)) (isDir(dir, entry) ? subdirs : files).push(entry.name);
  out.push({ dir, files });
  for (const sub of subdirs) walk(path.join(dir, sub), ancestors, out);
  ancestors.delete(real);
}

/** Indexes root/<class>/.../<image>. Throws, naming the path, if root is missing or holds no classes or a class no images. */
export function scanImageFolder(root: string): ImageFolderIndex {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(root);
  } catch {
    throw new Error(`scanImageFolder: dataset folder ${root} does not exist`);
  }
  if (!stat.isDirectory()) throw new Error(`scanImageFolder: ${root} is not a folder (expected root/<class>/<images>)`);
  const classes = listDir(root).filter((e) => isDir(root, e)).map((e) => e.name).sort(compareCodePoints);
  if (classes.length === 0) {
    throw new Error(`scanImageFolder: no class folders in ${root} (expected one sub-folder per class: root/<class>/<images>)`);
  }
  const items: { file: string; label: number }[] = [];
  const empty: string[] = [];
  classes.forEach((cls, label) => {
    const folders: { dir: string; files: string[] }[] = [];
    walk(path.join(root, cls), new Set(), folders);
    folders.sort((a, b) => compareCodePoints(a.dir, b.dir));
    const before = items.length;
    for (const { dir, files } of folders) {
      for (const name of files.sort(compareCodePoints)) if (isImageFile(name)) items.push({ file: path.join(dir, name), label });
    }
    if (items.length === before) empty.push(path.join(root, cls));
  });
  if (empty.length) {
    throw new Error(`scanImageFolder: no images (${IMAGE_EXTENSIONS.join(' ')}) in class folder${empty.length > 1 ? 's' : ''} ${empty.join(', ')}`);
  }
  return { root, classes, items };
}
