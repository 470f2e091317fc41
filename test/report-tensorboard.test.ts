import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { crc32c, maskedCrc32c } from '../src/report/crc32c';
import { encodePng } from '../src/report/png';
import { readEventFile, TensorBoardWriter } from '../src/report/tensorboard';

const tmpDirs: string[] = [];
function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'difftune-tb-'));
  tmpDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

// Reference CRC-32C computed one bit at a time straight from the polynomial (no table), checked against the
// published vectors below before it is used to assemble expected records.
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// The TFRecord mask in exact integer arithmetic: rotate right by 15, add 0xa282ead8, modulo 2^32.
function maskBigInt(crc: number): number {
  const c = BigInt(crc);
  const rotated = ((c >> 15n) | (c << 17n)) & 0xffffffffn;
  return Number((rotated + 0xa282ead8n) & 0xffffffffn);
}

function u32le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function ascii(s: string): number[] {
  return [...s].map((c) => c.charCodeAt(0));
}

const PUBLISHED_VECTORS: Array<[string, Uint8Array, number]> = [
  ['"123456789"', Buffer.from('123456789', 'ascii'), 0xe3069283],
  ['32 zero bytes (RFC 3720 B.4)', new Uint8Array(32), 0x8a9136aa],
  ['32 bytes of 0xFF (RFC 3720 B.4)', new Uint8Array(32).fill(0xff), 0x62a8ab43],
  ['32 incrementing bytes (RFC 3720 B.4)', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
  ['32 decrementing bytes (RFC 3720 B.4)', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ['empty', new Uint8Array(0), 0],
];

test('crc32c matches the published CRC-32C check values', () => {
  for (const [name, bytes, expected] of PUBLISHED_VECTORS) {
    assert.equal(crc32c(bytes), expected, name);
    assert.equal(crc32cBitwise(bytes), expected, `bitwise reference, ${name}`);
  }
});

test('crc32c continues a running checksum across pieces', () => {
  const data = Buffer.from('The quick brown fox jumps over the lazy dog', 'ascii');
  assert.equal(crc32c(data.subarray(17), crc32c(data.subarray(0, 17))), crc32cBitwise(data));
  assert.equal(maskedCrc32c(data), maskBigInt(crc32cBitwise(data)));
});

test('one scalar event is written as hand-assembled TFRecord bytes', () => {
  const dir = tmpDir();
  const w = new TensorBoardWriter(dir);
  w.addScalar('loss', 0.25, 42, 1700000000.5);
  w.close();
  assert.match(path.basename(w.file), /^events\.out\.tfevents\.\d+\..+\.difftune$/);
  assert.equal(path.dirname(w.file), dir);

  // Event { wall_time (1, fixed64) = 1700000000.5, step (2, varint) = 42,
  //         summary (5) = Summary { value (1) = Value { tag (1) = "loss", simple_value (2, fixed32) = 0.25 } } }
  const wallTime = [0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41]; // struct.pack('<d', 1700000000.5)
  const value = [0x0a, 0x04, ...ascii('loss'), 0x15, 0x00, 0x00, 0x80, 0x3e]; // 0.25f = 0x3e800000
  const summary = [0x0a, value.length, ...value];
  const event = Buffer.from([0x09, ...wallTime, 0x10, 42, 0x2a, summary.length, ...summary]);
  const lengthBytes = Buffer.from([event.length, 0, 0, 0, 0, 0, 0, 0]);
  const expected = Buffer.from([
    ...lengthBytes,
    ...u32le(maskBigInt(crc32cBitwise(lengthBytes))),
    ...event,
    ...u32le(maskBigInt(crc32cBitwise(event))),
  ]);

  const bytes = fs.readFileSync(w.file);
  // The file starts with Event { wall_time = now, file_version (3) = "brain.Event:2" }.
  const first = [0x09, ...new Array(8).fill(-1), 0x1a, 13, ...ascii('brain.Event:2')];
  assert.equal(bytes.readUInt32LE(0), first.length);
  assert.equal(bytes.readUInt32LE(4), 0);
  first.forEach((b, i) => {
    if (b >= 0) assert.equal(bytes[12 + i], b, `file_version record byte ${i}`);
  });
  const firstWallTime = bytes.readDoubleLE(13);
  assert.ok(Math.abs(firstWallTime - Date.now() / 1000) < 600, `first wall_time ${firstWallTime} is now`);
  assert.equal(bytes.length, 16 + first.length + expected.length);
  assert.deepEqual([...bytes.subarray(16 + first.length)], [...expected]);
});

test('scalars, several scalars per step and images read back as written', () => {
  const dir = tmpDir();
  const w = new TensorBoardWriter(dir);
  w.addScalar('train/loss', 0.1, 1);
  w.addScalar('train/loss', -3.5, 2 ** 40);
  w.addScalars({ 'a/x': 1.5, 'a/y': Number.NaN, 'a/z': Number.POSITIVE_INFINITY }, 7);
  const rgb = new Uint8Array(3 * 2 * 3).map((_, i) => (i * 37) & 0xff);
  const png = encodePng(rgb, 3, 2, 3);
  w.addImage('samples', png, 3, 2, 9);
  const grey = encodePng(new Uint8Array([0, 255]), 1, 2, 1);
  w.addImage('grey', grey, 1, 2, 0, 1234.5);
  w.close();

  const events = readEventFile(w.file);
  assert.equal(events.length, 6);
  assert.equal(events[0].fileVersion, 'brain.Event:2');
  assert.deepEqual(events[0].scalars, {});
  assert.deepEqual(events[1].scalars, { 'train/loss': Math.fround(0.1) });
  assert.equal(events[1].step, 1);
  assert.equal(events[1].fileVersion, undefined);
  assert.deepEqual(events[2].scalars, { 'train/loss': -3.5 });
  assert.equal(events[2].step, 2 ** 40);
  assert.equal(events[3].step, 7);
  assert.deepEqual(Object.keys(events[3].scalars), ['a/x', 'a/y', 'a/z']);
  assert.equal(events[3].scalars['a/x'], 1.5);
  assert.ok(Number.isNaN(events[3].scalars['a/y']));
  assert.equal(events[3].scalars['a/z'], Number.POSITIVE_INFINITY);
  assert.equal(events[4].step, 9);
  assert.deepEqual(events[4].images.samples, { width: 3, height: 2, png });
  assert.equal(events[5].step, 0);
  assert.equal(events[5].wallTime, 1234.5);
  assert.deepEqual(events[5].images.grey, { width: 1, height: 2, png: grey });
  for (const e of events.slice(0, 5)) assert.ok(Math.abs(e.wallTime - Date.now() / 1000) < 600);
});

test('every flipped byte is detected and named by file and offset; a truncated tail is ignored', () => {
  const dir = tmpDir();
  const w = new TensorBoardWriter(dir);
  w.addScalar('loss', 1, 1);
  w.addScalars({ lr: 1e-4, loss: 0.5 }, 2);
  w.close();
  const good = fs.readFileSync(w.file);
  const copy = path.join(dir, 'copy.tfevents');
  const recordStarts = [0];
  for (let pos = 0; pos < good.length; ) {
    pos += 16 + Number(good.readBigUInt64LE(pos));
    recordStarts.push(pos);
  }
  assert.equal(recordStarts[recordStarts.length - 1], good.length);
  for (let i = 0; i < good.length; i++) {
    const bad = Buffer.from(good);
    bad[i] ^= 0x10;
    fs.writeFileSync(copy, bad);
    const recordStart = Math.max(...recordStarts.filter((s) => s <= i));
    assert.throws(
      () => readEventFile(copy),
      (e: Error) => e.message.includes(copy) && e.message.includes(`offset ${recordStart}`) && /CRC mismatch/.test(e.message),
      `flipped byte ${i}`,
    );
  }
  for (const cut of [1, 5, 15, good.length - recordStarts[2] - 1]) {
    fs.writeFileSync(copy, good.subarray(0, good.length - cut));
    const events = readEventFile(copy);
    assert.equal(events.length, 2, `cut ${cut} bytes`);
    assert.deepEqual(events[1].scalars, { loss: 1 });
  }
});

test('records still buffered are written when the process exits without close()', () => {
  const dir = tmpDir();
  const writerModule = path.join(__dirname, '..', 'src', 'report', 'tensorboard.js');
  const script = `
    const { TensorBoardWriter } = require(${JSON.stringify(writerModule)});
    const w = new TensorBoardWriter(${JSON.stringify(dir)}, { flushIntervalMs: 3600000 });
    w.addScalar('loss', 0.5, 3);
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const files = fs.readdirSync(dir);
  assert.equal(files.length, 1);
  const events = readEventFile(path.join(dir, files[0]));
  assert.equal(events.length, 2);
  assert.deepEqual(events[1].scalars, { loss: 0.5 });
  assert.equal(events[1].step, 3);
});

test('writers opened in the same folder in the same second use separate files', () => {
  const dir = tmpDir();
  const a = new TensorBoardWriter(dir);
  const b = new TensorBoardWriter(dir);
  a.addScalar('x', 1, 1);
  b.addScalar('x', 2, 1);
  a.close();
  b.close();
  assert.notEqual(a.file, b.file);
  assert.deepEqual(readEventFile(a.file)[1].scalars, { x: 1 });
  assert.deepEqual(readEventFile(b.file)[1].scalars, { x: 2 });
});

test('bad input is refused with a clear message', () => {
  const w = new TensorBoardWriter(tmpDir());
  assert.throws(() => w.addScalar('', 1, 1), /tag must be a non-empty string/);
  assert.throws(() => w.addScalar('x', 1, 1.5), /step must be an integer/);
  assert.throws(() => w.addImage('img', Buffer.from('not a png'), 1, 1, 0), /expected PNG bytes/);
  const png = encodePng(new Uint8Array(4), 2, 2, 1);
  assert.throws(() => w.addImage('img', png, 3, 2, 0), /3x2 does not match the PNG's 2x2/);
  w.close();
  assert.throws(() => w.addScalar('x', 1, 1), /is closed/);
});

// TensorBoard (or TensorFlow) reads the file with its own protobuf and record reader, where one is installed.
const PYTHON_READER = `
import json, sys
try:
    from tensorboard.backend.event_processing import event_file_loader as efl
    loader = getattr(efl, 'LegacyEventFileLoader', efl.EventFileLoader)
    events = list(loader(sys.argv[1]).Load())
except ImportError:
    import tensorflow as tf
    events = list(tf.compat.v1.train.summary_iterator(sys.argv[1]))
out = []
for e in events:
    d = {'wall_time': e.wall_time, 'step': e.step, 'file_version': e.file_version, 'scalars': {}, 'images': {}}
    for v in e.summary.value:
        if v.HasField('simple_value'):
            d['scalars'][v.tag] = v.simple_value
        if v.HasField('image'):
            d['images'][v.tag] = [v.image.width, v.image.height, v.image.colorspace, v.image.encoded_image_string.hex()]
    out.append(d)
print(json.dumps(out))
`;

function pythonHasReader(): boolean {
  for (const mod of ['tensorboard', 'tensorflow']) {
    if (spawnSync('/usr/bin/python3', ['-c', `import ${mod}`]).status === 0) return true;
  }
  return false;
}

test('TensorBoard itself reads the file', { skip: pythonHasReader() ? false : 'python3 has neither tensorboard nor tensorflow' }, () => {
  const w = new TensorBoardWriter(tmpDir());
  w.addScalar('loss', 0.75, 5, 1700000001.25);
  w.addScalars({ lr: 0.5, 'eval/fid': 12.5 }, 6, 1700000002);
  const png = encodePng(new Uint8Array(2 * 2 * 4).fill(200), 2, 2, 4);
  w.addImage('samples', png, 2, 2, 7, 1700000003);
  w.close();
  const r = spawnSync('/usr/bin/python3', ['-c', PYTHON_READER, w.file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const events = JSON.parse(r.stdout);
  assert.equal(events.length, 4);
  assert.equal(events[0].file_version, 'brain.Event:2');
  assert.deepEqual(events[1], { wall_time: 1700000001.25, step: 5, file_version: '', scalars: { loss: 0.75 }, images: {} });
  assert.deepEqual(events[2], { wall_time: 1700000002, step: 6, file_version: '', scalars: { lr: 0.5, 'eval/fid': 12.5 }, images: {} });
  assert.deepEqual(events[3].images, { samples: [2, 2, 4, png.toString('hex')] });
});
