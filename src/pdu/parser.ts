// Byte stream -> PDUs (RFC 7143 sections 11.1-11.2). Pure: no I/O, no timers.
//
// Wire layout of one PDU:  BHS(48) | AHS(TotalAHSLength*4) | HeaderDigest(4)? |
//                          Data(DataSegmentLength) | pad to 4 | DataDigest(4)?
// The data digest covers data and padding and is absent when there is no data.
//
// Memory contract: after push(chunk) returns, the parser holds no reference into
// `chunk`; a delivered Pdu may (zero-copy slices), so the caller may reuse a chunk's
// memory once push() has returned and it has released the PDUs delivered from it.
// Partial state is at most one PDU: a BHS, an AHS, and one data segment allocated
// at its exact size after the length has been checked against the limit.

import { BHS_LENGTH, type Crc32cFn, type Pdu } from './pdu';
import { CHECK_DATA, CHECK_HEADER, type PduCheckFn } from './digests';

export type PduParseErrorKind = 'header-digest' | 'data-digest' | 'data-too-long';

export class PduParseError extends Error {
  override readonly name = 'PduParseError';
  /** True when the stream can no longer be trusted: the parser ignores further input. */
  readonly fatal: boolean;

  constructor(
    readonly kind: PduParseErrorKind,
    message: string,
    /** The offending BHS (all kinds). */
    readonly bhs: Buffer,
    /** The complete PDU, for 'data-digest' (the data failed its digest). */
    readonly pdu: Pdu | null = null,
    /** Digest kinds: digest received and computed. */
    readonly received?: number,
    readonly computed?: number,
  ) {
    super(message);
    this.fatal = kind === 'header-digest';
  }
}

export interface PduParserOptions {
  onPdu(pdu: Pdu): void;
  onError(err: PduParseError): void;
  /** Required before enabling either digest. */
  crc32c?: Crc32cFn;
  /**
   * Checks a whole PDU's digests in one call (digests.ts): with it, a PDU that lies whole in one pushed chunk
   * is verified and delivered in one step. A PDU that fails it takes the piecewise path, which reports the error.
   */
  pduCheck?: PduCheckFn;
  /** Largest DataSegmentLength accepted; default 8192 (the RFC default MaxRecvDataSegmentLength). */
  maxDataSegmentLength?: number;
  /**
   * The caller never reuses a chunk's memory (e.g. reads land in fresh slabs): the parser may then keep views
   * into chunks across push() calls, and a data segment that spans reads which are contiguous in memory is
   * delivered as one view instead of being assembled by copying.
   */
  retainChunks?: boolean;
}

const S_BHS = 0;
const S_AHS = 1;
const S_HDIGEST = 2;
const S_DATA = 3;
const S_TRAILER = 4; // pad, then the data digest when on
const S_SKIP = 5; // a rejected data segment
const S_DEAD = 6;

const EMPTY = Buffer.alloc(0);

export class PduParser {
  /** Largest DataSegmentLength accepted; checked when each header completes. */
  maxDataSegmentLength: number;
  /** Data-segment bytes copied because a segment spanned reads (everything else is delivered as slices). */
  copiedBytes = 0;
  /**
   * PDUs ended so far (delivered or skipped). With `idle`, this lets a caller that owns a clock tell how
   * long the PDU in progress has been partial: a new one began whenever this changed.
   */
  pduBoundaries = 0;
  /** PDUs whose header digest was checked and matched (an observable for tests and metrics). */
  headerDigestsVerified = 0;
  /** PDUs whose data digest was checked and matched. */
  dataDigestsVerified = 0;
  private readonly retain: boolean;
  private parts: Buffer[] = [];

  private readonly onPdu: (pdu: Pdu) => void;
  private readonly onError: (err: PduParseError) => void;
  private readonly crc: Crc32cFn | undefined;
  private readonly check: PduCheckFn | undefined;
  private hdOn = false;
  private ddOn = false;

  private state = S_BHS;
  private epoch = 0;
  /** Bytes of the current piece received so far, when it is being assembled. */
  private fill = 0;
  // Current PDU. The *View flags mark buffers that point into the chunk being pushed.
  private bhs: Buffer | null = null;
  private bhsView = false;
  private ahs: Buffer | null = null;
  private ahsView = false;
  private data: Buffer | null = null;
  private dataView = false;
  private ahsLen = 0;
  private dataLen = 0;
  private pad = 0;
  /** Digest flags latched for the PDU in progress. */
  private hd = false;
  private dd = false;
  private skip = 0;
  /** Holds a digest or pad+digest that arrives split across chunks. */
  private readonly scratch = Buffer.alloc(8);

  constructor(opts: PduParserOptions) {
    this.onPdu = opts.onPdu;
    this.onError = opts.onError;
    this.crc = opts.crc32c;
    this.check = opts.pduCheck;
    this.maxDataSegmentLength = opts.maxDataSegmentLength ?? 8192;
    this.retain = opts.retainChunks === true;
  }

  /** HeaderDigest=CRC32C; takes effect at the next PDU boundary. */
  get headerDigest(): boolean {
    return this.hdOn;
  }
  set headerDigest(on: boolean) {
    if (on && this.crc === undefined) throw new TypeError('headerDigest needs the crc32c option');
    this.hdOn = on;
  }

  /** DataDigest=CRC32C; takes effect at the next PDU boundary. */
  get dataDigest(): boolean {
    return this.ddOn;
  }
  set dataDigest(on: boolean) {
    if (on && this.crc === undefined) throw new TypeError('dataDigest needs the crc32c option');
    this.ddOn = on;
  }

  /** True after a fatal error: input is ignored until reset(). */
  get failed(): boolean {
    return this.state === S_DEAD;
  }

  /**
   * While onPdu runs: true when more bytes of the same chunk follow the PDU (another PDU, or a part of one),
   * so that an answer given at once can wait to go out with the answers to those. False outside push().
   */
  pduFollows = false;

  /** True when no PDU is partially received. */
  get idle(): boolean {
    return this.state === S_BHS && this.fill === 0;
  }

  /** Drop any partial PDU and clear a fatal error. Digest flags are kept. */
  reset(): void {
    this.epoch++;
    this.clear();
    this.state = S_BHS;
  }

  /**
   * Feed bytes. Never throws on any input; exceptions thrown by onPdu/onError
   * propagate, after which the parser is failed (the rest of the chunk is lost).
   *
   * Returns the number of bytes consumed: chunk.length, unless a callback called
   * reset() (then: the end of the PDU it was handling) or a fatal error occurred.
   * The portal uses this to stop after the first Login PDU and hand the rest over.
   */
  push(chunk: Buffer): number {
    if (this.state === S_DEAD) return 0;
    let consumed: number;
    try {
      consumed = this.consume(chunk);
    } catch (err) {
      this.clear();
      this.state = S_DEAD;
      throw err;
    } finally {
      this.pduFollows = false;
    }
    if (this.retain) return consumed;
    // Keep nothing that points into the caller's chunk.
    if (this.bhsView) {
      this.bhs = Buffer.from(this.bhs!);
      this.bhsView = false;
    }
    if (this.ahsView) {
      this.ahs = Buffer.from(this.ahs!);
      this.ahsView = false;
    }
    if (this.dataView) {
      this.copiedBytes += this.data!.length;
      this.data = Buffer.from(this.data!);
      this.dataView = false;
    }
    return consumed;
  }

  /** A segment received in pieces: one view when the pieces are adjacent in one buffer, else a copy. */
  private joinParts(len: number): Buffer {
    const parts = this.parts;
    this.parts = [];
    const first = parts[0]!;
    let contiguous = true;
    for (let i = 1; i < parts.length && contiguous; i++) {
      const prev = parts[i - 1]!;
      contiguous =
        parts[i]!.buffer === first.buffer && parts[i]!.byteOffset === prev.byteOffset + prev.length;
    }
    if (contiguous) return Buffer.from(first.buffer, first.byteOffset, len);
    this.copiedBytes += len;
    return Buffer.concat(parts, len);
  }

  private clear(): void {
    this.parts = [];
    this.fill = 0;
    this.bhs = this.ahs = this.data = null;
    this.bhsView = this.ahsView = this.dataView = false;
    this.skip = 0;
  }

  /** Returns how many bytes were consumed: all, unless reset() or a fatal error stopped it. */
  private consume(chunk: Buffer): number {
    const end = chunk.length;
    const epoch = this.epoch;
    let pos = 0;
    while (pos < end) {
      const avail = end - pos;
      switch (this.state) {
        case S_BHS: {
          if (this.fill === 0 && avail >= BHS_LENGTH) {
            if (this.check !== undefined && (this.hdOn || this.ddOn)) {
              const n = this.wholePdu(chunk, pos, avail);
              if (n > 0) {
                pos += n;
                break;
              }
            }
            this.bhs = chunk.subarray(pos, pos + BHS_LENGTH);
            this.bhsView = true;
            pos += BHS_LENGTH;
          } else {
            if (this.fill === 0) this.bhs = Buffer.allocUnsafe(BHS_LENGTH);
            const n = Math.min(avail, BHS_LENGTH - this.fill);
            chunk.copy(this.bhs!, this.fill, pos, pos + n);
            pos += n;
            this.fill += n;
            if (this.fill < BHS_LENGTH) return end;
            this.fill = 0;
          }
          this.pduFollows = pos < end;
          this.beginPdu();
          break;
        }
        case S_AHS: {
          const len = this.ahsLen;
          if (this.fill === 0 && avail >= len) {
            this.ahs = chunk.subarray(pos, pos + len);
            this.ahsView = true;
            pos += len;
          } else {
            if (this.fill === 0) this.ahs = Buffer.allocUnsafe(len);
            const n = Math.min(avail, len - this.fill);
            chunk.copy(this.ahs!, this.fill, pos, pos + n);
            pos += n;
            this.fill += n;
            if (this.fill < len) return end;
            this.fill = 0;
          }
          if (this.hd) this.state = S_HDIGEST;
          else {
            this.pduFollows = pos < end;
            this.headerDone();
          }
          break;
        }
        case S_HDIGEST: {
          let received: number;
          if (this.fill === 0 && avail >= 4) {
            received = chunk.readUInt32LE(pos);
            pos += 4;
          } else {
            const n = Math.min(avail, 4 - this.fill);
            chunk.copy(this.scratch, this.fill, pos, pos + n);
            pos += n;
            this.fill += n;
            if (this.fill < 4) return end;
            this.fill = 0;
            received = this.scratch.readUInt32LE(0);
          }
          let computed = this.crc!(this.bhs!);
          if (this.ahs !== null) computed = this.crc!(this.ahs, computed);
          if (computed >>> 0 !== received) {
            const bhs = this.bhsView ? Buffer.from(this.bhs!) : this.bhs!;
            this.clear();
            this.state = S_DEAD;
            this.onError(
              new PduParseError(
                'header-digest',
                'header digest mismatch',
                bhs,
                null,
                received,
                computed >>> 0,
              ),
            );
            return pos;
          }
          this.headerDigestsVerified++;
          this.pduFollows = pos < end;
          this.headerDone();
          break;
        }
        case S_DATA: {
          const len = this.dataLen;
          if (this.fill === 0 && avail >= len) {
            this.data = chunk.subarray(pos, pos + len);
            this.dataView = true;
            pos += len;
          } else if (this.retain) {
            const n = Math.min(avail, len - this.fill);
            this.parts.push(chunk.subarray(pos, pos + n));
            pos += n;
            this.fill += n;
            if (this.fill < len) return end;
            this.fill = 0;
            this.data = this.joinParts(len);
          } else {
            if (this.fill === 0) this.data = Buffer.allocUnsafe(len);
            const n = Math.min(avail, len - this.fill);
            chunk.copy(this.data!, this.fill, pos, pos + n);
            this.copiedBytes += n;
            pos += n;
            this.fill += n;
            if (this.fill < len) return end;
            this.fill = 0;
          }
          if (this.pad === 0 && !this.dd) {
            this.pduFollows = pos < end;
            this.deliver(this.data!);
            if (this.epoch !== epoch) return pos;
          } else {
            this.state = S_TRAILER;
          }
          break;
        }
        case S_TRAILER: {
          // Padding, then the data digest when on. Waiting for the padding too (not
          // delivering early) keeps push()'s consumed count on a PDU boundary; the
          // rare chunk boundary inside a trailer costs one copy of the data.
          const len = this.pad + (this.dd ? 4 : 0);
          let trailer: Buffer;
          let at: number;
          if (this.fill === 0 && avail >= len) {
            trailer = chunk;
            at = pos;
            pos += len;
          } else {
            const n = Math.min(avail, len - this.fill);
            chunk.copy(this.scratch, this.fill, pos, pos + n);
            pos += n;
            this.fill += n;
            if (this.fill < len) return end;
            this.fill = 0;
            trailer = this.scratch;
            at = 0;
          }
          const data = this.data!;
          this.pduFollows = pos < end;
          if (!this.dd) {
            this.deliver(data);
            if (this.epoch !== epoch) return pos;
            break;
          }
          let computed = this.crc!(data);
          if (this.pad > 0) computed = this.crc!(trailer.subarray(at, at + this.pad), computed);
          computed >>>= 0;
          const received = trailer.readUInt32LE(at + this.pad);
          if (computed === received) {
            this.dataDigestsVerified++;
            this.deliver(data);
          } else {
            const pdu = this.makePdu(data);
            this.resetPdu();
            this.onError(
              new PduParseError('data-digest', 'data digest mismatch', pdu.bhs, pdu, received, computed),
            );
          }
          if (this.epoch !== epoch) return pos;
          break;
        }
        case S_SKIP: {
          const n = Math.min(avail, this.skip);
          pos += n;
          this.skip -= n;
          if (this.skip === 0) {
            this.state = S_BHS;
            this.pduBoundaries++;
          }
          break;
        }
        default:
          return pos; // S_DEAD
      }
      if (this.state === S_DEAD || this.epoch !== epoch) return pos;
    }
    return end;
  }

  /**
   * A PDU lying whole in the chunk from `pos`, digests on: check them in one call and deliver it. Returns the
   * bytes it took, or 0 (not whole, too long, or a digest wrong) to leave it to the piecewise states.
   */
  private wholePdu(chunk: Buffer, pos: number, avail: number): number {
    const ahsLen = chunk[pos + 4]! * 4;
    const dataLen = (chunk[pos + 5]! << 16) | (chunk[pos + 6]! << 8) | chunk[pos + 7]!;
    if (dataLen > this.maxDataSegmentLength) return 0;
    const hd = this.hdOn;
    const dd = this.ddOn && dataLen > 0;
    const headerLen = BHS_LENGTH + ahsLen;
    const pad = (4 - (dataLen & 3)) & 3;
    const total = headerLen + (hd ? 4 : 0) + dataLen + pad + (dd ? 4 : 0);
    if (avail < total || !(hd || dd)) return 0;
    if (this.check!(chunk, pos, headerLen, dataLen, (hd ? CHECK_HEADER : 0) | (dd ? CHECK_DATA : 0)) !== 0)
      return 0;
    this.bhs = chunk.subarray(pos, pos + BHS_LENGTH);
    this.ahs = ahsLen > 0 ? chunk.subarray(pos + BHS_LENGTH, pos + headerLen) : null;
    this.dataLen = dataLen;
    if (hd) this.headerDigestsVerified++;
    if (dd) this.dataDigestsVerified++;
    const at = pos + headerLen + (hd ? 4 : 0);
    this.pduFollows = total < avail;
    this.deliver(dataLen > 0 ? chunk.subarray(at, at + dataLen) : EMPTY);
    return total;
  }

  private beginPdu(): void {
    const b = this.bhs!;
    this.hd = this.hdOn;
    this.dd = this.ddOn;
    this.ahsLen = b[4]! * 4;
    this.dataLen = (b[5]! << 16) | (b[6]! << 8) | b[7]!;
    this.pad = (4 - (this.dataLen & 3)) & 3;
    this.ahs = null;
    if (this.ahsLen > 0) this.state = S_AHS;
    else if (this.hd) this.state = S_HDIGEST;
    else this.headerDone();
  }

  /** The header (and its digest) is complete and trusted. */
  private headerDone(): void {
    const len = this.dataLen;
    if (len === 0) {
      this.deliver(EMPTY);
      return;
    }
    if (len > this.maxDataSegmentLength) {
      const bhs = this.bhsView ? Buffer.from(this.bhs!) : this.bhs!;
      const skip = len + this.pad + (this.dd ? 4 : 0);
      this.resetPdu();
      this.skip = skip;
      this.state = S_SKIP;
      this.onError(
        new PduParseError(
          'data-too-long',
          `DataSegmentLength ${len} exceeds ${this.maxDataSegmentLength}`,
          bhs,
        ),
      );
      return;
    }
    this.state = S_DATA;
  }

  private makePdu(data: Buffer): Pdu {
    const bhs = this.bhs!;
    return {
      bhs,
      ahs: this.ahs,
      data,
      opcode: bhs[0]! & 0x3f,
      immediate: (bhs[0]! & 0x40) !== 0,
      final: (bhs[1]! & 0x80) !== 0,
      itt: bhs.readUInt32BE(16),
      dataLength: this.dataLen,
    };
  }

  /** Back to waiting for a BHS, before any callback runs (callbacks may re-enter). */
  private resetPdu(): void {
    this.pduBoundaries++;
    this.bhs = this.ahs = this.data = null;
    this.bhsView = this.ahsView = this.dataView = false;
    this.fill = 0;
    this.state = S_BHS;
  }

  private deliver(data: Buffer): void {
    const pdu = this.makePdu(data);
    this.resetPdu();
    this.onPdu(pdu);
  }
}
