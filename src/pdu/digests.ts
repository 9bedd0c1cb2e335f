/**
 * Header and data digests (CRC32C, RFC 7143 sec. 11.1 and 13.1) computed a PDU at a time: the contract of
 * the two functions the parser and frame() use when they are given them, and a reference implementation of
 * both over any Crc32cFn (tests; the data path uses the native pduSeal/pduCheck, one crossing per PDU).
 *
 * Why per PDU: a digest per crc32c() call costs a native crossing, a 4-byte buffer and a writev entry each;
 * here the header digest travels in the same buffer as the BHS and the data digest with the padding.
 */
import type { Crc32cFn } from './pdu';

/**
 * Fill an outgoing PDU's digests. `hdr` (null: no header digest) is `bhs.length + 4` bytes and receives bhs
 * followed by CRC32C(bhs) least significant byte first. `trailer` (null: no data digest) is 4 + pad bytes
 * (pad 0..3): the pad bytes become zero and the last 4 CRC32C(data ++ pad). `data` is read where it lies.
 */
export type PduSealFn = (
  bhs: Uint8Array,
  hdr: Uint8Array | null,
  data: Uint8Array | null,
  trailer: Uint8Array | null,
) => void;

/**
 * Check the digests of a complete PDU lying in `buf` from `at`: `headerLen` bytes of BHS and AHS, then (flags
 * bit 1) the header digest, `dataLen` bytes of data, its pad, then (flags bit 2, and only with data) the data
 * digest. Returns 0 when every digest present matches, else 1 (header), 2 (data) or 3. Throws a RangeError
 * when the PDU runs past the buffer.
 */
export type PduCheckFn = (
  buf: Uint8Array,
  at: number,
  headerLen: number,
  dataLen: number,
  flags: number,
) => number;

export const CHECK_HEADER = 1;
export const CHECK_DATA = 2;

export interface PduDigestFns {
  seal: PduSealFn;
  check: PduCheckFn;
}

const le32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

function putLe32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

const EMPTY = new Uint8Array(0);

/** seal and check built from a CRC32C function, by the contract above: the reference for the native ones. */
export function pduDigestFns(crc: Crc32cFn): PduDigestFns {
  return {
    seal(bhs, hdr, data, trailer) {
      if (hdr !== null) {
        if (hdr.length !== bhs.length + 4)
          throw new TypeError('pduSeal: hdr must be 4 bytes longer than bhs');
        hdr.set(bhs, 0);
        putLe32(hdr, bhs.length, crc(bhs) >>> 0);
      }
      if (trailer !== null) {
        if (trailer.length < 4 || trailer.length > 7)
          throw new TypeError('pduSeal: trailer must be 4 to 7 bytes');
        const pad = trailer.length - 4;
        trailer.fill(0, 0, pad);
        putLe32(trailer, pad, crc(trailer.subarray(0, pad), crc(data ?? EMPTY)) >>> 0);
      }
    },
    check(buf, at, headerLen, dataLen, flags) {
      const pad = (4 - (dataLen & 3)) & 3;
      const hd = (flags & CHECK_HEADER) !== 0;
      const dd = (flags & CHECK_DATA) !== 0 && dataLen > 0;
      if (at + headerLen + (hd ? 4 : 0) + dataLen + pad + (dd ? 4 : 0) > buf.length)
        throw new RangeError('pduCheck: the PDU runs past the buffer');
      let bad = 0;
      let p = at + headerLen;
      if (hd) {
        if (crc(buf.subarray(at, p)) >>> 0 !== le32(buf, p)) bad |= CHECK_HEADER;
        p += 4;
      }
      if (dd && crc(buf.subarray(p, p + dataLen + pad)) >>> 0 !== le32(buf, p + dataLen + pad))
        bad |= CHECK_DATA;
      return bad;
    },
  };
}
