/**
 * Codec for the key=value text carried in Login and Text PDUs (RFC 7143 sec. 6.1), the
 * accumulation of a logical-text-data-segment across PDUs with the C (continue) bit, and the
 * splitting of a long response into PDUs no larger than the peer's MaxRecvDataSegmentLength.
 */

/** Longest key-name (RFC 7143 sec. 6.1). */
export const MAX_KEY_LENGTH = 63;
/** Longest simple-value unless a key says otherwise (RFC 7143 sec. 6.1). */
export const MAX_SIMPLE_VALUE_LENGTH = 255;
/**
 * Longest value we accept at all: room for hex/base64-encoded large binary values (CHAP_C,
 * CHAP_R, ...) and for lists whose every element is within MAX_SIMPLE_VALUE_LENGTH.
 */
export const MAX_VALUE_LENGTH = 8192;
/** Default cap of an accumulated text sequence: the 64 KiB every node must be able to receive. */
export const DEFAULT_MAX_TEXT_LENGTH = 65536;

// letters, digits, dot, minus, plus, commercial at, underscore; "X#" opens public extension keys
const KEY_RE = /^(?:X#)?[A-Za-z0-9.\-+@_]+$/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

export interface ParseTextOptions {
  /** Accept the same key more than once (target responses: TargetName/TargetAddress lists). */
  allowDuplicates?: boolean;
}

export interface ParsedText {
  /** The pairs in order of appearance; empty when `error` is set. */
  pairs: Array<[string, string]>;
  /** Why the text is malformed; the whole text must then be refused. */
  error?: string;
}

/**
 * Parse a complete logical-text-data-segment. Every pair must be followed by a NUL (RFC 7143
 * sec. 6.1 "including the last or only pair"), so a missing final NUL is an error. Extra NULs
 * (empty pairs) are ignored.
 */
export function parseTextData(data: Buffer, opts: ParseTextOptions = {}): ParsedText {
  const pairs: Array<[string, string]> = [];
  const seen = new Set<string>();
  const fail = (error: string): ParsedText => ({ pairs: [], error });
  let pos = 0;
  while (pos < data.length) {
    const end = data.indexOf(0, pos);
    if (end < 0) return fail(`text is not NUL-terminated at offset ${pos}`);
    if (end === pos) {
      pos++;
      continue;
    }
    const eq = data.indexOf(0x3d, pos); // '='
    if (eq < 0 || eq > end) return fail(`missing '=' in pair at offset ${pos}`);
    if (eq === pos) return fail(`empty key at offset ${pos}`);
    if (eq - pos > MAX_KEY_LENGTH) return fail(`key longer than ${MAX_KEY_LENGTH} bytes at offset ${pos}`);
    const key = data.toString('latin1', pos, eq);
    if (!KEY_RE.test(key)) return fail(`invalid character in key '${printable(key)}'`);
    const rawValue = data.subarray(eq + 1, end);
    let value: string;
    try {
      value = utf8.decode(rawValue);
    } catch {
      return fail(`value of ${key} is not valid UTF-8`);
    }
    const lengthError = checkValueLength(key, rawValue);
    if (lengthError) return fail(lengthError);
    if (!opts.allowDuplicates) {
      if (seen.has(key)) return fail(`duplicate key ${key}`);
      seen.add(key);
    }
    pairs.push([key, value]);
    pos = end + 1;
  }
  return { pairs };
}

function checkValueLength(key: string, raw: Buffer): string | undefined {
  if (raw.length > MAX_VALUE_LENGTH) return `value of ${key} longer than ${MAX_VALUE_LENGTH} bytes`;
  // hex/base64 constants (large binary values) may exceed the simple-value limit
  if (raw.length > 2 && raw[0] === 0x30 && (raw[1] | 0x20) === 0x78) return undefined; // 0x / 0X
  if (raw.length > 2 && raw[0] === 0x30 && (raw[1] | 0x20) === 0x62) return undefined; // 0b / 0B
  let start = 0;
  for (let i = 0; i <= raw.length; i++) {
    if (i === raw.length || raw[i] === 0x2c) {
      if (i - start > MAX_SIMPLE_VALUE_LENGTH) {
        return `value of ${key} has an element longer than ${MAX_SIMPLE_VALUE_LENGTH} bytes`;
      }
      start = i + 1;
    }
  }
  return undefined;
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Encode pairs as key=value NUL key=value NUL ... Throws on a key or value that cannot be sent. */
export function encodeTextData(pairs: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of pairs) {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || !KEY_RE.test(key)) {
      throw new RangeError(`invalid key '${printable(key)}'`);
    }
    if (value.includes('\0')) throw new RangeError(`value of ${key} contains NUL`);
    parts.push(Buffer.from(`${key}=${value}\0`, 'utf8'));
  }
  return Buffer.concat(parts);
}

export type AccumulateResult =
  { state: 'partial' } | { state: 'complete'; data: Buffer } | { state: 'error'; error: string };

/**
 * Joins the data segments of a series of Login/Text PDUs with C=1 ended by one with C=0 into
 * one logical-text-data-segment. Segments held across PDUs are copied, since the receive
 * buffers they arrive in are pooled and reused.
 */
export class TextAccumulator {
  private parts: Buffer[] = [];
  private length = 0;

  constructor(private readonly maxLength: number = DEFAULT_MAX_TEXT_LENGTH) {}

  /** Bytes held from earlier PDUs of an unfinished sequence. */
  get pending(): number {
    return this.length;
  }

  /** True while a sequence has begun (a PDU with C=1 was pushed) and not yet ended. */
  get inProgress(): boolean {
    return this.parts.length > 0;
  }

  push(segment: Buffer, continueBit: boolean): AccumulateResult {
    if (this.length + segment.length > this.maxLength) {
      this.reset();
      return { state: 'error', error: `text exceeds ${this.maxLength} bytes` };
    }
    if (continueBit) {
      if (segment.length > 0) {
        this.parts.push(Buffer.from(segment));
        this.length += segment.length;
      } else if (this.parts.length === 0) {
        this.parts.push(Buffer.alloc(0));
      }
      return { state: 'partial' };
    }
    if (this.parts.length === 0) return { state: 'complete', data: segment };
    const data = Buffer.concat([...this.parts, segment], this.length + segment.length);
    this.reset();
    return { state: 'complete', data };
  }

  reset(): void {
    this.parts = [];
    this.length = 0;
  }
}

/**
 * Cut an encoded text into data segments of at most maxLen bytes (the receiver's
 * MaxRecvDataSegmentLength). Pairs may straddle PDUs (RFC 7143 sec. 6.1): every segment but
 * the last goes out with C=1. An empty text yields one empty segment. Segments share memory
 * with `buf`.
 */
export function splitTextData(buf: Buffer, maxLen: number): Buffer[] {
  if (!Number.isInteger(maxLen) || maxLen < 1) throw new RangeError(`invalid segment length ${maxLen}`);
  if (buf.length === 0) return [buf];
  const out: Buffer[] = [];
  for (let off = 0; off < buf.length; off += maxLen)
    out.push(buf.subarray(off, Math.min(off + maxLen, buf.length)));
  return out;
}
