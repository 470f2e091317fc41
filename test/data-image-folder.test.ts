// scanImageFolder against torchvision's ImageFolder rule, worked out by hand for a tree with the
// cases that trip a naive scan: class order by code point (upper case first), nested folders in
// sorted(os.walk()) order (a sibling "sub-x" comes before "sub/deeper"), extensions in any case,
// non-images ignored, folders reached through links.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { compareCodePoints, isImageFile, scanImageFolder } from '../src/data/image-folder';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-folder-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function touch(root: string, rel: string): void {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, 'x'); // the scan never opens files
}

test('class order, labels and file order follow torchvision ImageFolder', () => {
  const root = path.join(tmp, 'tree');
  for (const rel of [
    'cat/b.png', 'cat/a.JPG', 'cat/notes.txt', 'cat/Z.webp',
    'cat/sub/c.jpeg', 'cat/sub/deeper/e.gif', 'cat/sub-x/d.bmp',
    'Dog/only.svg', 'Dog/x.TIFF', 'Dog/y.tif',
    'ant b/1.png', 'ant b/10.png', 'ant b/2.png',
  ]) touch(root, rel);
  touch(root, 'readme.png'); // a file at the root is not a class
  fs.symlinkSync(path.join(root, 'cat', 'sub'), path.join(root, 'Dog', 'linked')); // os.walk(followlinks=True) enters it

  const index = scanImageFolder(root);
  // sorted(): 'D' (0x44) < 'a' (0x61) < 'c'.
  assert.deepEqual(index.classes, ['Dog', 'ant b', 'cat']);
  const rel = index.items.map((it) => [path.relative(root, it.file), it.label]);
  assert.deepEqual(rel, [
    ['Dog/only.svg', 0], ['Dog/x.TIFF', 0], ['Dog/y.tif', 0],
    ['Dog/linked/c.jpeg', 0], ['Dog/linked/deeper/e.gif', 0],
    ['ant b/1.png', 1], ['ant b/10.png', 1], ['ant b/2.png', 1],
    // folders sorted by path: cat < cat/sub < cat/sub-x < cat/sub/deeper ('-' sorts before '/')
    ['cat/Z.webp', 2], ['cat/a.JPG', 2], ['cat/b.png', 2],
    ['cat/sub/c.jpeg', 2], ['cat/sub-x/d.bmp', 2], ['cat/sub/deeper/e.gif', 2],
  ]);
  assert.equal(index.root, root);
});

test('a link back up the tree does not loop', () => {
  const root = path.join(tmp, 'cycle');
  touch(root, 'a/img.png');
  fs.symlinkSync(path.join(root, 'a'), path.join(root, 'a', 'again'));
  const index = scanImageFolder(root);
  assert.deepEqual(index.items.map((it) => path.relative(root, it.file)), ['a/img.png']);
});

test('clear errors: missing root, a file as root, no class folders, a class without images', () => {
  const missing = path.join(tmp, 'missing');
  assert.throws(() => scanImageFolder(missing), (e: Error) => e.message.includes(missing) && /does not exist/.test(e.message));

  const flat = path.join(tmp, 'flat');
  touch(flat, 'a.png');
  assert.throws(() => scanImageFolder(flat), (e: Error) => e.message.includes(flat) && /no class folders/.test(e.message));
  assert.throws(() => scanImageFolder(path.join(flat, 'a.png')), /is not a folder/);

  const partly = path.join(tmp, 'partly');
  touch(partly, 'good/a.png');
  touch(partly, 'bad/readme.txt');
  fs.mkdirSync(path.join(partly, 'empty'));
  assert.throws(() => scanImageFolder(partly), (e: Error) =>
    e.message.includes(path.join(partly, 'bad')) && e.message.includes(path.join(partly, 'empty')) && /no images/.test(e.message));
});

test('extensions are matched case-insensitively at the end of the name', () => {
  for (const yes of ['a.png', 'b.PNG', 'c.Jpeg', 'd.jpg', 'e.webp', 'f.bmp', 'g.gif', 'h.svg', 'i.tif', 'j.TIFF', 'x.tar.png']) assert.ok(isImageFile(yes), yes);
  for (const no of ['a.txt', 'png', 'b.png.bak', 'c.ppm', 'd.jpe', 'e']) assert.ok(!isImageFile(no), no);
});

test('name order is by code point, as Python sorts strings', () => {
  // U+FF5E (BMP, above the surrogates) sorts before U+1F600 by code point, after it by UTF-16 unit.
  const names = ['\u{1F600}', '\uFF5E', 'b', 'B', 'a'];
  assert.deepEqual([...names].sort(compareCodePoints), ['B', 'a', 'b', '\uFF5E', '\u{1F600}']);
  assert.equal(compareCodePoints('ab', 'ab'), 0);
  assert.ok(compareCodePoints('ab', 'abc') < 0);
});
