// TensorBoard event files written directly: TFRecord framing around protobuf `Event` messages, so training
// curves and sample images show up in TensorBoard without TensorFlow or any dependency.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { maskedCrc32c } from './crc32c';
import { bytesField, decodeMessage, doubleField, floatField, ProtoField, varintField, varintToInt64 } from './protobuf';

// Field numbers from tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.
const EVENT_WALL_TIME = 1;
const EVENT_STEP = 2;
const EVENT_FILE_VERSION = 3;
const EVENT_SUMMARY = 5;
const SUMMARY_VALUE = 1;
const VALUE_TAG = 1;
const VALUE_SIMPLE_VALUE = 2;
const VALUE_IMAGE = 4;
const IMAGE_HEIGHT = 1;
const IMAGE_WIDTH = 2;
const IMAGE_COLORSPACE = 3;
const IMAGE_ENCODED = 4;

const FILE_VERSION = 'brain.Event:2';
const DEFAULT_FLUSH_INTERVAL_MS = 2000;
// Big images are written at once rather than held in memory until the next timer tick.
const MAX_BUFFERED_BYTES = 1 << 20;

export interface TensorBoardEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Record<string, number>;
  images: Record<string, { width: number; height: number; png: Buffer }>;
}

/** One TFRecord: uint64 length, masked CRC of the length bytes, data, masked CRC of the data (all little-endian). */
function frameRecord(data: Buffer): Buffer {
  const out = Buffer.alloc(16 + data.length);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  data.copy(out, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

function encodeEvent(wallTime: number, step: number, summaryValues: Buffer[], fileVersion?: string): Buffer {
  const parts = [doubleField(EVENT_WALL_TIME, wallTime)];
  // proto3 leaves zero-valued scalars out; readers default them to 0.
  if (step !== 0) parts.push(varintField(EVENT_STEP, step));
  if (fileVersion !== undefined) parts.push(bytesField(EVENT_FILE_VERSION, fileVersion));
  if (summaryValues.length > 0) {
    parts.push(bytesField(EVENT_SUMMARY, Buffer.concat(summaryValues.map((v) => bytesField(SUMMARY_VALUE, v)))));
  }
  return Buffer.concat(parts);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
// PNG colour type -> Summary.Image colorspace (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA); palette images decode to RGB.
const COLORSPACE_OF_PNG_COLOR_TYPE: Record<number, number> = { 0: 1, 4: 2, 2: 3, 3: 3, 6: 4 };

function pngColorspace(tag: string, png: Buffer, width: number, height: number): number {
  if (png.length < 33 || !png.subarray(0, 8).equals(PNG_SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') {
    throw new Error(`TensorBoardWriter.addImage(${JSON.stringify(tag)}): expected PNG bytes (signature and IHDR chunk)`);
  }
  const pngWidth = png.readUInt32BE(16);
  const pngHeight = png.readUInt32BE(20);
  if (pngWidth !== width || pngHeight !== height) {
    throw new Error(
      `TensorBoardWriter.addImage(${JSON.stringify(tag)}): width x height ${width}x${height} does not match the PNG's ${pngWidth}x${pngHeight}`,
    );
  }
  return COLORSPACE_OF_PNG_COLOR_TYPE[png[25]] ?? 3;
}

function checkTag(method: string, tag: string): void {
  if (typeof tag !== 'string' || tag.length === 0) throw new TypeError(`TensorBoardWriter.${method}: tag must be a non-empty string`);
}

function checkStep(method: string, step: number): void {
  if (!Number.isSafeInteger(step)) throw new RangeError(`TensorBoardWriter.${method}: step must be an integer, got ${step}`);
}

// Writers still open when the process exits get their buffered records written by one shared exit hook.
const openWriters = new Set<TensorBoardWriter>();
let exitHookInstalled = false;
function flushOpenWritersAtExit(): void {
  for (const w of openWriters) {
    try {
      w.flush();
    } catch {
      // Exiting anyway; a failed last flush must not hide the exit reason.
    }
  }
}

function uniqueEventFileName(dir: string): string {
  const base = `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${os.hostname()}.difftune`;
  // Two writers started in the same second in the same folder must not interleave into one file.
  let name = base;
  for (let n = 1; fs.existsSync(path.join(dir, name)); n++) name = `${base}.${n}`;
  return path.join(dir, name);
}

/**
 * Appends TensorBoard events to `<dir>/events.out.tfevents.<unix seconds>.<hostname>.difftune`.
 * Records are buffered and written whole with `fs.writeSync` on flush(), every couple of seconds, when over
 * 1 MiB, on close() and at process exit, so a killed run loses at most the last seconds and never leaves
 * half a record unless the kill lands inside a write.
 */
export class TensorBoardWriter {
  readonly file: string;
  private fd: number | null;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | null;
  private failure: unknown = null;

  constructor(dir: string, o: { flushIntervalMs?: number } = {}) {
    fs.mkdirSync(dir, { recursive: true });
    this.file = uniqueEventFileName(dir);
    this.fd = fs.openSync(this.file, 'a');
    openWriters.add(this);
    if (!exitHookInstalled) {
      process.on('exit', flushOpenWritersAtExit);
      exitHookInstalled = true;
    }
    this.append(encodeEvent(Date.now() / 1000, 0, [], FILE_VERSION));
    this.flush();
    this.timer = setInterval(() => {
      // A timer cannot throw at the caller: keep the error for the next call that can.
      try {
        this.flush();
      } catch (e) {
        this.failure = e;
      }
    }, o.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  addScalar(tag: string, value: number, step: number, wallTime?: number): void {
    checkTag('addScalar', tag);
    checkStep('addScalar', step);
    if (typeof value !== 'number') throw new TypeError(`TensorBoardWriter.addScalar(${JSON.stringify(tag)}): value must be a number`);
    const summaryValue = Buffer.concat([bytesField(VALUE_TAG, tag), floatField(VALUE_SIMPLE_VALUE, value)]);
    this.append(encodeEvent(wallTime ?? Date.now() / 1000, step, [summaryValue]));
  }

  /** Several scalars of one step as one Event (one Summary with a Value per tag). */
  addScalars(values: Record<string, number>, step: number, wallTime?: number): void {
    checkStep('addScalars', step);
    const summaryValues: Buffer[] = [];
    for (const [tag, value] of Object.entries(values)) {
      checkTag('addScalars', tag);
      if (typeof value !== 'number') throw new TypeError(`TensorBoardWriter.addScalars: value of ${JSON.stringify(tag)} must be a number`);
      summaryValues.push(Buffer.concat([bytesField(VALUE_TAG, tag), floatField(VALUE_SIMPLE_VALUE, value)]));
    }
    if (summaryValues.length === 0) return;
    this.append(encodeEvent(wallTime ?? Date.now() / 1000, step, summaryValues));
  }

  /** A PNG-encoded image (see src/report/png.ts); width and height must match the PNG's header. */
  addImage(tag: string, png: Buffer, width: number, height: number, step: number, wallTime?: number): void {
    checkTag('addImage', tag);
    checkStep('addImage', step);
    const colorspace = pngColorspace(tag, png, width, height);
    const image = Buffer.concat([
      varintField(IMAGE_HEIGHT, height),
      varintField(IMAGE_WIDTH, width),
      varintField(IMAGE_COLORSPACE, colorspace),
      bytesField(IMAGE_ENCODED, png),
    ]);
    const summaryValue = Buffer.concat([bytesField(VALUE_TAG, tag), bytesField(VALUE_IMAGE, image)]);
    this.append(encodeEvent(wallTime ?? Date.now() / 1000, step, [summaryValue]));
  }

  /** Writes every buffered record to the file now. */
  flush(): void {
    this.throwPendingFailure();
    if (this.fd === null || this.pending.length === 0) return;
    const data = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    let written = 0;
    while (written < data.length) written += fs.writeSync(this.fd, data, written, data.length - written);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      this.flush();
    } finally {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      fs.closeSync(this.fd);
      this.fd = null;
      openWriters.delete(this);
    }
  }

  private append(eventBytes: Buffer): void {
    this.throwPendingFailure();
    if (this.fd === null) throw new Error(`TensorBoardWriter: ${this.file} is closed`);
    const record = frameRecord(eventBytes);
    this.pending.push(record);
    this.pendingBytes += record.length;
    if (this.pendingBytes >= MAX_BUFFERED_BYTES) this.flush();
  }

  private throwPendingFailure(): void {
    if (this.failure === null) return;
    const e = this.failure;
    this.failure = null;
    throw new Error(`TensorBoardWriter: writing ${this.file} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function expectWire(f: ProtoField, wireType: number, where: string, name: string): void {
  if (f.wireType !== wireType) {
    throw new Error(`${where}: ${name} (field ${f.field}) has wire type ${f.wireType}, expected ${wireType}`);
  }
}

function decodeImage(bytes: Buffer, where: string): { width: number; height: number; png: Buffer } {
  const image = { width: 0, height: 0, png: Buffer.alloc(0) };
  for (const f of decodeMessage(bytes, where)) {
    if (f.field === IMAGE_HEIGHT) { expectWire(f, 0, where, 'Image.height'); image.height = Number(f.varint); }
    else if (f.field === IMAGE_WIDTH) { expectWire(f, 0, where, 'Image.width'); image.width = Number(f.varint); }
    else if (f.field === IMAGE_ENCODED) { expectWire(f, 2, where, 'Image.encoded_image_string'); image.png = Buffer.from(f.bytes!); }
  }
  return image;
}

function decodeSummary(bytes: Buffer, event: TensorBoardEvent, where: string): void {
  for (const f of decodeMessage(bytes, where)) {
    if (f.field !== SUMMARY_VALUE) continue;
    expectWire(f, 2, where, 'Summary.value');
    let tag = '';
    let scalar: number | undefined;
    let image: TensorBoardEvent['images'][string] | undefined;
    for (const v of decodeMessage(f.bytes!, where)) {
      if (v.field === VALUE_TAG) { expectWire(v, 2, where, 'Value.tag'); tag = v.bytes!.toString('utf8'); }
      else if (v.field === VALUE_SIMPLE_VALUE) { expectWire(v, 5, where, 'Value.simple_value'); scalar = v.bytes!.readFloatLE(0); }
      else if (v.field === VALUE_IMAGE) { expectWire(v, 2, where, 'Value.image'); image = decodeImage(v.bytes!, where); }
    }
    if (scalar !== undefined) event.scalars[tag] = scalar;
    if (image !== undefined) event.images[tag] = image;
  }
}

function decodeEvent(data: Buffer, where: string): TensorBoardEvent {
  const event: TensorBoardEvent = { wallTime: 0, step: 0, scalars: {}, images: {} };
  for (const f of decodeMessage(data, where)) {
    if (f.field === EVENT_WALL_TIME) { expectWire(f, 1, where, 'Event.wall_time'); event.wallTime = f.bytes!.readDoubleLE(0); }
    else if (f.field === EVENT_STEP) { expectWire(f, 0, where, 'Event.step'); event.step = varintToInt64(f.varint!); }
    else if (f.field === EVENT_FILE_VERSION) { expectWire(f, 2, where, 'Event.file_version'); event.fileVersion = f.bytes!.toString('utf8'); }
    else if (f.field === EVENT_SUMMARY) { expectWire(f, 2, where, 'Event.summary'); decodeSummary(f.bytes!, event, where); }
  }
  return event;
}

/**
 * Reads an event file, checking both CRCs of every record. Corruption throws, naming the file and the record's
 * byte offset. An incomplete last record (a run killed mid-write) is ignored, as TensorBoard does.
 */
export function readEventFile(file: string): TensorBoardEvent[] {
  const buf = fs.readFileSync(file);
  const events: TensorBoardEvent[] = [];
  let pos = 0;
  while (pos + 12 <= buf.length) {
    if (buf.readUInt32LE(pos + 8) !== maskedCrc32c(buf.subarray(pos, pos + 8))) {
      throw new Error(`${file}: corrupt record at offset ${pos}: length CRC mismatch`);
    }
    const length = buf.readBigUInt64LE(pos);
    if (length > BigInt(buf.length - pos - 16)) break; // truncated tail
    const start = pos + 12;
    const end = start + Number(length);
    const data = buf.subarray(start, end);
    if (buf.readUInt32LE(end) !== maskedCrc32c(data)) {
      throw new Error(`${file}: corrupt record at offset ${pos}: data CRC mismatch`);
    }
    events.push(decodeEvent(data, `${file}: record at offset ${pos}`));
    pos = end + 4;
  }
  return events;
}
