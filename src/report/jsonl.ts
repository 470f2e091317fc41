// JSON Lines training logs: one record per line, written as it happens so a killed run keeps its history.
import * as fs from 'fs';
import * as path from 'path';

// JSON has no NaN or Infinity; a diverging loss must still produce a parseable line.
const NON_FINITE_STRINGS = new Map<string, number>([
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
]);

function encodeNonFinite(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

function decodeNonFinite(_key: string, value: unknown): unknown {
  return typeof value === 'string' && NON_FINITE_STRINGS.has(value) ? NON_FINITE_STRINGS.get(value) : value;
}

/** Appends records to a .jsonl file (append: false starts it empty); every write() reaches the file at once. */
export class JsonlLogger {
  readonly file: string;
  private fd: number | null;

  constructor(file: string, o: { append?: boolean } = {}) {
    this.file = file;
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, o.append === false ? 'w' : 'a');
  }

  /** One line; NaN and ±Infinity become the strings "NaN", "Infinity", "-Infinity", bigints become strings. */
  write(record: Record<string, unknown>): void {
    if (this.fd === null) throw new Error(`JsonlLogger: ${this.file} is closed`);
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      throw new TypeError(`JsonlLogger.write(${this.file}): expected a plain object record`);
    }
    const line = Buffer.from(JSON.stringify(record, encodeNonFinite) + '\n', 'utf8');
    // One write call per line keeps lines whole; loop only in case the OS accepts part of it.
    let written = 0;
    while (written < line.length) written += fs.writeSync(this.fd, line, written, line.length - written);
  }

  close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * Reads a .jsonl file back, turning "NaN", "Infinity" and "-Infinity" strings into numbers again. Blank lines are
 * skipped; a last line without its newline that does not parse (a run killed mid-write) is dropped silently.
 * Any other bad line throws, naming the file and the line number.
 */
export function readJsonl(file: string): Record<string, unknown>[] {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const records: Record<string, unknown>[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    const unterminatedLast = i === lines.length - 1;
    let value: unknown;
    try {
      value = JSON.parse(line, decodeNonFinite);
    } catch (e) {
      if (unterminatedLast) break;
      throw new Error(`${file}:${i + 1}: invalid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      if (unterminatedLast) break;
      throw new Error(`${file}:${i + 1}: expected a JSON object per line`);
    }
    records.push(value as Record<string, unknown>);
  }
  return records;
}

/**
 * Cuts a log back to the records up to `step` (by their `step` field), for a run resumed from a
 * checkpoint at that step: the steps after it run again and are logged again. Records are in the
 * order they were written, so everything from the first later one on is dropped.
 */
export function truncateJsonlAfter(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const text = fs.readFileSync(file);
  let offset = 0;
  while (offset < text.length) {
    const end = text.indexOf(0x0a, offset);
    const next = end < 0 ? text.length : end + 1;
    let record: unknown = null;
    try {
      record = JSON.parse(text.subarray(offset, next).toString('utf8'));
    } catch { /* a half-written last line goes with the rest */ }
    if (end < 0 || (record !== null && typeof (record as { step?: unknown }).step === 'number' && (record as { step: number }).step > step)) break;
    offset = next;
  }
  if (offset < text.length) fs.truncateSync(file, offset);
}
