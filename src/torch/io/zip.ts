// Minimal zip reader for torch.save archives: central directory (+ zip64),
// stored and deflated entries, each read on demand with positional reads so
// large checkpoints never sit in one buffer. Every offset is bounds-checked.
import { constants as bufferConstants } from 'node:buffer';
import * as zlib from 'node:zlib';
import { ByteSource, CheckpointError, bufferSource, openFileSource } from './raw';

export interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;

export interface ZipOptions {
  /** Check each entry's CRC-32 on read (default true). */
  verifyCrc?: boolean;
}

export class ZipArchive {
  readonly entries: Map<string, ZipEntry>;
  private readonly src: ByteSource;
  /** Entry data must end before the central directory starts. */
  private readonly dataLimit: number;
  private readonly verifyCrc: boolean;

  static open(path: string, opts: ZipOptions = {}): ZipArchive {
    const src = openFileSource(path);
    try {
      return new ZipArchive(src, opts);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  static fromBuffer(buf: Uint8Array, name = '<zip buffer>', opts: ZipOptions = {}): ZipArchive {
    return new ZipArchive(bufferSource(buf, name), opts);
  }

  constructor(src: ByteSource, opts: ZipOptions = {}) {
    this.src = src;
    this.verifyCrc = opts.verifyCrc ?? true;
    const { cdOffset, cdSize, count } = this.findCentralDirectory();
    this.dataLimit = cdOffset;
    this.entries = this.readCentralDirectory(cdOffset, cdSize, count);
  }

  get name(): string { return this.src.name; }

  close(): void { this.src.close(); }

  private fail(msg: string): never {
    throw new CheckpointError(this.src.name, `zip: ${msg}`);
  }

  private findCentralDirectory(): { cdOffset: number; cdSize: number; count: number } {
    const size = this.src.size;
    if (size < EOCD_SIZE) this.fail(`file has ${size} bytes, too small for a zip archive`);
    // The EOCD record sits at the end, followed by a comment of up to 64 KiB.
    const tailLen = Math.min(size, EOCD_SIZE + 0xffff);
    const tailStart = size - tailLen;
    const tail = this.src.read(tailStart, tailLen, 'zip end record');
    const dv = view(tail);
    let eocd = -1;
    for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
      if (dv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + dv.getUint16(i + 20, true) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) this.fail('end-of-central-directory record not found (not a zip file, or truncated)');
    const eocdPos = tailStart + eocd;
    const disk = dv.getUint16(eocd + 4, true);
    const cdDisk = dv.getUint16(eocd + 6, true);
    let count = dv.getUint16(eocd + 10, true);
    let cdSize = dv.getUint32(eocd + 12, true);
    let cdOffset = dv.getUint32(eocd + 16, true);
    let cdLimit = eocdPos;
    if (disk !== 0 || cdDisk !== 0) this.fail('multi-disk archives are not supported');

    // zip64: a locator immediately before the EOCD points at the zip64 EOCD.
    if (eocdPos >= 20) {
      const loc = view(this.src.read(eocdPos - 20, 20, 'zip64 locator'));
      if (loc.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
        const z64Pos = toSafe(loc.getBigUint64(8, true));
        if (z64Pos < 0 || z64Pos + 56 > eocdPos - 20) this.fail(`zip64 end record offset ${z64Pos} is out of range`);
        const z = view(this.src.read(z64Pos, 56, 'zip64 end record'));
        if (z.getUint32(0, true) !== SIG_ZIP64_EOCD) this.fail(`no zip64 end record at offset ${z64Pos}`);
        const c = toSafe(z.getBigUint64(32, true));
        const s = toSafe(z.getBigUint64(40, true));
        const o = toSafe(z.getBigUint64(48, true));
        if (c < 0 || s < 0 || o < 0) this.fail('zip64 end record values are too large');
        count = c; cdSize = s; cdOffset = o; cdLimit = z64Pos;
      }
    }
    if (cdOffset + cdSize > cdLimit) {
      this.fail(`central directory [${cdOffset}, ${cdOffset + cdSize}) runs past its end record at ${cdLimit}`);
    }
    if (count * CENTRAL_SIZE > cdSize) this.fail(`${count} entries cannot fit in a ${cdSize}-byte central directory`);
    return { cdOffset, cdSize, count };
  }

  private readCentralDirectory(cdOffset: number, cdSize: number, count: number): Map<string, ZipEntry> {
    const cd = this.src.read(cdOffset, cdSize, 'zip central directory');
    const dv = view(cd);
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + CENTRAL_SIZE > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) {
        this.fail(`central directory entry ${i} at offset ${cdOffset + p} is malformed`);
      }
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc32 = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let uncompressedSize = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      const end = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
      if (end > cdSize) this.fail(`central directory entry ${i} runs past the directory`);
      const name = new TextDecoder('utf-8').decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));

      // zip64 extra field: 8-byte values for whichever 32-bit fields are saturated, in this order.
      if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
        let q = p + CENTRAL_SIZE + nameLen;
        const qEnd = q + extraLen;
        let found = false;
        while (q + 4 <= qEnd) {
          const id = dv.getUint16(q, true);
          const len = dv.getUint16(q + 2, true);
          if (q + 4 + len > qEnd) break;
          if (id === 0x0001) {
            let r = q + 4;
            const next = (): number => {
              if (r + 8 > q + 4 + len) this.fail(`entry '${name}': zip64 extra field is too short`);
              const v = toSafe(dv.getBigUint64(r, true));
              r += 8;
              if (v < 0) this.fail(`entry '${name}': zip64 size/offset is too large`);
              return v;
            };
            if (uncompressedSize === 0xffffffff) uncompressedSize = next();
            if (compressedSize === 0xffffffff) compressedSize = next();
            if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
            found = true;
            break;
          }
          q += 4 + len;
        }
        if (!found) this.fail(`entry '${name}': 32-bit fields are saturated but there is no zip64 extra field`);
      }
      if (localHeaderOffset + LOCAL_SIZE > this.dataLimit) {
        this.fail(`entry '${name}': local header offset ${localHeaderOffset} is past the data area (${this.dataLimit} bytes)`);
      }
      if (entries.has(name)) this.fail(`duplicate entry '${name}'`);
      entries.set(name, { name, method, flags, crc32, compressedSize, uncompressedSize, localHeaderOffset });
      p = end;
    }
    return entries;
  }

  has(name: string): boolean { return this.entries.has(name); }

  /**
   * The entry's uncompressed bytes (a fresh buffer). `budget` caps what deflated entries may
   * inflate to in all (checked before inflating; the declared size is what is allocated).
   */
  read(name: string, budget?: { left: number }): Uint8Array {
    const e = this.entries.get(name);
    if (!e) this.fail(`entry '${name}' not found`);
    if (budget && e.method !== 0) {
      if (e.uncompressedSize > budget.left) {
        this.fail(`entry '${name}' would inflate to ${e.uncompressedSize} bytes, more than this ${this.src.size}-byte archive may unpack to ` +
          `(${budget.left} bytes left of the maxMaterializedBytes limit)`);
      }
      budget.left -= e.uncompressedSize;
    }
    if (e.flags & 0x1) this.fail(`entry '${name}' is encrypted`);
    const lh = view(this.src.read(e.localHeaderOffset, LOCAL_SIZE, `zip local header of '${name}'`));
    if (lh.getUint32(0, true) !== SIG_LOCAL) this.fail(`entry '${name}': no local header at offset ${e.localHeaderOffset}`);
    const dataStart = e.localHeaderOffset + LOCAL_SIZE + lh.getUint16(26, true) + lh.getUint16(28, true);
    if (dataStart + e.compressedSize > this.dataLimit) {
      this.fail(`entry '${name}': data [${dataStart}, ${dataStart + e.compressedSize}) overlaps the central directory at ${this.dataLimit}`);
    }
    let data: Uint8Array;
    if (e.method === 0) {
      if (e.compressedSize !== e.uncompressedSize) {
        this.fail(`entry '${name}': stored entry has compressed size ${e.compressedSize} != uncompressed size ${e.uncompressedSize}`);
      }
      data = this.src.read(dataStart, e.compressedSize, `zip entry '${name}'`);
    } else if (e.method === 8) {
      const packed = this.src.read(dataStart, e.compressedSize, `zip entry '${name}'`);
      if (e.uncompressedSize > bufferConstants.MAX_LENGTH) {
        this.fail(`entry '${name}': uncompressed size ${e.uncompressedSize} is too large`);
      }
      let out: Buffer;
      try {
        // The declared size bounds the output, so a deflate bomb cannot grow past it.
        out = zlib.inflateRawSync(packed, { maxOutputLength: Math.max(1, e.uncompressedSize) });
      } catch (err) {
        this.fail(`entry '${name}': deflate data is corrupt (${(err as Error).message})`);
      }
      if (out.length !== e.uncompressedSize) {
        this.fail(`entry '${name}': inflated to ${out.length} bytes, expected ${e.uncompressedSize}`);
      }
      data = out.byteOffset === 0 ? new Uint8Array(out.buffer, 0, out.length) : new Uint8Array(out);
    } else {
      this.fail(`entry '${name}': compression method ${e.method} is not supported (only stored and deflate)`);
    }
    if (this.verifyCrc && (zlib.crc32(data) >>> 0) !== (e.crc32 >>> 0)) {
      this.fail(`entry '${name}': CRC-32 mismatch (file is corrupt)`);
    }
    return data;
  }
}

/** True when the source starts like a zip archive. */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b &&
    ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6));
}

/**
 * Tiny stored-only zip writer (no zip64). Used by tests to build crafted
 * archives; checkpoints themselves are written as safetensors.
 */
export function encodeStoredZip(entries: { name: string; data: Uint8Array }[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = zlib.crc32(data) >>> 0;
    const local = new Uint8Array(LOCAL_SIZE + nameBytes.length);
    const l = view(local);
    l.setUint32(0, SIG_LOCAL, true);
    l.setUint16(4, 20, true);
    l.setUint16(6, 0x800, true); // UTF-8 names
    l.setUint32(14, crc, true);
    l.setUint32(18, data.length, true);
    l.setUint32(22, data.length, true);
    l.setUint16(26, nameBytes.length, true);
    local.set(nameBytes, LOCAL_SIZE);
    const c = new Uint8Array(CENTRAL_SIZE + nameBytes.length);
    const cv = view(c);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(8, 0x800, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    c.set(nameBytes, CENTRAL_SIZE);
    chunks.push(local, data);
    central.push(c);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const eocd = new Uint8Array(EOCD_SIZE);
  const ev = view(eocd);
  ev.setUint32(0, SIG_EOCD, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  return Buffer.concat([...chunks, ...central, eocd]);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** u64 -> number, or -1 if it does not fit exactly. */
function toSafe(v: bigint): number {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : -1;
}
