// The few protobuf wire-format pieces TensorBoard event files need: varints, fixed 32/64-bit numbers and
// length-delimited fields (strings, bytes, nested messages). Encoders return Buffers the caller concatenates.

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

/** Base-128 varint; negative int64 values are written as their 64-bit two's complement (10 bytes), as protobuf does. */
export function encodeVarint(value: number | bigint): Buffer {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new RangeError(`protobuf: varint value must be a safe integer, got ${value}`);
  }
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  while (v >= 0x80n) {
    bytes.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  bytes.push(Number(v));
  return Buffer.from(bytes);
}

function key(field: number, wireType: number): Buffer {
  if (!Number.isInteger(field) || field < 1 || field > 0x1fffffff) {
    throw new RangeError(`protobuf: field number must be an integer in 1..2^29-1, got ${field}`);
  }
  return encodeVarint(field * 8 + wireType);
}

export function varintField(field: number, value: number | bigint): Buffer {
  return Buffer.concat([key(field, WIRE_VARINT), encodeVarint(value)]);
}

export function doubleField(field: number, value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value, 0);
  return Buffer.concat([key(field, WIRE_FIXED64), b]);
}

export function floatField(field: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value, 0);
  return Buffer.concat([key(field, WIRE_FIXED32), b]);
}

/** Bytes, a UTF-8 string or an already encoded nested message. */
export function bytesField(field: number, value: Uint8Array | string): Buffer {
  const body = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  return Buffer.concat([key(field, WIRE_LENGTH_DELIMITED), encodeVarint(body.length), body]);
}

/** One decoded field. `varint` is set for wire type 0, `bytes` (a view, not a copy) for the other three. */
export interface ProtoField {
  field: number;
  wireType: number;
  varint?: bigint;
  bytes?: Buffer;
  /** Offset of the field's key inside the message, for error messages. */
  offset: number;
}

function readVarint(buf: Buffer, pos: number, where: string): { value: bigint; next: number } {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) throw new Error(`${where}: varint runs past the end of the message at byte ${pos}`);
    const b = buf[pos + i];
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) return { value: BigInt.asUintN(64, value), next: pos + i + 1 };
  }
  throw new Error(`${where}: varint longer than 10 bytes at byte ${pos}`);
}

/** Splits a message into its fields, in order; `where` prefixes error messages (e.g. "file.tfevents record at 1234"). */
export function decodeMessage(buf: Buffer, where: string): ProtoField[] {
  const fields: ProtoField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const offset = pos;
    const k = readVarint(buf, pos, where);
    pos = k.next;
    const field = Number(k.value >> 3n);
    const wireType = Number(k.value & 7n);
    if (field === 0) throw new Error(`${where}: field number 0 at byte ${offset}`);
    if (wireType === WIRE_VARINT) {
      const v = readVarint(buf, pos, where);
      fields.push({ field, wireType, varint: v.value, offset });
      pos = v.next;
      continue;
    }
    let length: number;
    if (wireType === WIRE_FIXED64) length = 8;
    else if (wireType === WIRE_FIXED32) length = 4;
    else if (wireType === WIRE_LENGTH_DELIMITED) {
      const v = readVarint(buf, pos, where);
      pos = v.next;
      if (v.value > BigInt(buf.length - pos)) {
        throw new Error(`${where}: field ${field} at byte ${offset} claims ${v.value} bytes, only ${buf.length - pos} left`);
      }
      length = Number(v.value);
    } else {
      throw new Error(`${where}: unsupported wire type ${wireType} for field ${field} at byte ${offset}`);
    }
    if (pos + length > buf.length) throw new Error(`${where}: field ${field} at byte ${offset} runs past the end of the message`);
    fields.push({ field, wireType, bytes: buf.subarray(pos, pos + length), offset });
    pos += length;
  }
  return fields;
}

/** Reads a signed int64 varint as a number (exact up to 2^53). */
export function varintToInt64(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}
