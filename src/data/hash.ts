// SHA-256 of files and buffers: the identity of a model file recorded in a knowledge bank's
// manifest (and checked again by the trainer).
import * as crypto from 'crypto';
import * as fs from 'fs';

const CHUNK_BYTES = 8 << 20;

/** Hex SHA-256 of bytes (strings are hashed as UTF-8). */
export function sha256Bytes(data: Uint8Array | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Hex SHA-256 of a file, read in 8 MiB chunks so multi-GB checkpoints never sit in memory whole. */
export function sha256File(file: string): string {
  const hash = crypto.createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot open to hash it (${(e as Error).message})`);
  }
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK_BYTES, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}
