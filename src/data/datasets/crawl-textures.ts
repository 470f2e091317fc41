// crawl-textures: floor and wall textures of Dungeon Crawl Stone Soup (Debian crawl-tiles-data).
// floor.png and wall.png are sheets of 32x32 tiles on a 32-pixel grid; every grid cell that is
// not fully transparent becomes one image (partly transparent ones flattened onto white), and
// duplicates are dropped. Class = floor / wall. (The other sheets are packed without a grid and
// need metadata compiled into the game, so they are not used.)
import * as fs from 'fs';
import sharp from 'sharp';
import { debianPackage, packagePath } from './debian';
import type { BuildMeta, BuildOptions } from './types';
import { DatasetFolderWriter } from './write-folder';

export const CRAWL_PACKAGE = 'crawl-tiles-data';
export const CRAWL_TILES_DIR = 'usr/share/crawl/dat/tiles';
export const CRAWL_SHEETS = ['floor', 'wall'];
export const TILE = 32;

/** An RGBA image, 8 bits per channel, row by row. */
export interface RgbaImage {
  rgba: Uint8Array;
  width: number;
  height: number;
}

export interface Tile {
  row: number;
  col: number;
  rgba: Uint8Array;
}

/**
 * Cuts a sheet into tile x tile cells on the grid that starts at its top-left corner, row by row;
 * cells with every alpha 0 are left out, and so is any partial cell at the right or bottom edge.
 */
export function sliceGrid(sheet: RgbaImage, tile: number): Tile[] {
  if (sheet.rgba.length !== sheet.width * sheet.height * 4) {
    throw new RangeError(`sliceGrid: expected ${sheet.width * sheet.height * 4} RGBA bytes for ${sheet.width}x${sheet.height}, got ${sheet.rgba.length}`);
  }
  const tiles: Tile[] = [];
  for (let row = 0; (row + 1) * tile <= sheet.height; row++) {
    for (let col = 0; (col + 1) * tile <= sheet.width; col++) {
      const rgba = new Uint8Array(tile * tile * 4);
      let opaque = false;
      for (let y = 0; y < tile; y++) {
        const from = ((row * tile + y) * sheet.width + col * tile) * 4;
        rgba.set(sheet.rgba.subarray(from, from + tile * 4), y * tile * 4);
      }
      for (let i = 3; i < rgba.length && !opaque; i += 4) opaque = rgba[i] !== 0;
      if (opaque) tiles.push({ row, col, rgba });
    }
  }
  return tiles;
}

/** Straight (non-premultiplied) alpha over white, rounded to the nearest level. */
export function flattenOnWhite(rgba: Uint8Array): Uint8Array {
  const out = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    const a = rgba[i + 3];
    for (let c = 0; c < 3; c++) out[j + c] = Math.floor((rgba[i + c] * a + 255 * (255 - a)) / 255 + 0.5);
  }
  return out;
}

async function readRgba(file: string): Promise<RgbaImage> {
  const { data, info } = await sharp(fs.readFileSync(file), { failOn: 'error' })
    .toColourspace('srgb')
    .ensureAlpha()
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new Error(`${file}: expected RGBA after decoding, got ${info.channels} channels`);
  return { rgba: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

export async function buildCrawlTextures(writer: DatasetFolderWriter, o: BuildOptions): Promise<BuildMeta> {
  const pkg = debianPackage(CRAWL_PACKAGE, { cacheDir: o.cacheDir, log: o.log });
  let partial = 0;
  for (const sheet of CRAWL_SHEETS) {
    const file = packagePath(pkg, `${CRAWL_TILES_DIR}/${sheet}.png`);
    const img = await readRgba(file);
    const tiles = sliceGrid(img, TILE);
    const cells = Math.floor(img.width / TILE) * Math.floor(img.height / TILE);
    writer.skip('transparent', cells - tiles.length);
    for (const t of tiles) {
      let translucent = false;
      for (let i = 3; i < t.rgba.length && !translucent; i += 4) translucent = t.rgba[i] !== 255;
      if (writer.add({ cls: sheet, name: `${sheet}-r${String(t.row).padStart(2, '0')}-c${String(t.col).padStart(2, '0')}`, pixels: flattenOnWhite(t.rgba), width: TILE, height: TILE, channels: 3 }) === 'added' && translucent) partial++;
    }
  }
  return {
    description: 'Dungeon Crawl Stone Soup floor and wall tiles, 32x32 RGB (full-frame textures); class = floor / wall',
    sources: [{ kind: 'debian', package: pkg.name, version: pkg.version, licence: 'CC0-1.0 / public domain (most tiles, per Debian crawl-common copyright); game GPL-2+', author: 'Dungeon Crawl Stone Soup tile artists', url: 'https://github.com/crawl/tiles', images: writer.count }],
    attribution: `# crawl-textures: attribution

Floor and wall tiles of Dungeon Crawl Stone Soup (https://crawl.develz.org, tiles at
https://github.com/crawl/tiles), taken from the Debian package ${pkg.name} ${pkg.version}
(${CRAWL_TILES_DIR}/floor.png and wall.png) and cut on their 32-pixel grid. Debian's copyright file
for crawl (crawl-common) lists the tiles as "Public Domain | CC0: most of tiles"; the game itself is
GPL-2+. Partly transparent tiles (${partial}) were flattened onto white; nothing else was changed.
`,
    background: 'white',
    notes: ['class = sheet (floor, wall)', 'file <sheet>-r<row>-c<col> = the grid cell at that row and column', `${partial} partly transparent tiles flattened onto white`],
  };
}
