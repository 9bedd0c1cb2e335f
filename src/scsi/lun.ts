/**
 * SAM-5 single-level LUN structure (8 bytes): peripheral device addressing (method 00b, bus 0) for LUNs
 * below 256, flat space addressing (method 01b) for 256..16383. Other methods and multi-level LUNs are not
 * served by this target and decode to -1.
 */

export const MAX_LUN = 0x3fff;

export function encodeLun(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > MAX_LUN)
    throw new RangeError(`LUN ${n} out of range 0..${MAX_LUN}`);
  const b = Buffer.alloc(8);
  if (n < 256) {
    b[1] = n;
  } else {
    b[0] = 0x40 | (n >> 8);
    b[1] = n & 0xff;
  }
  return b;
}

/** LUN number, or -1 for an addressing this target does not use (reported as LOGICAL UNIT NOT SUPPORTED). */
export function decodeLun(bytes8: Buffer): number {
  if (bytes8.length < 8) return -1;
  for (let i = 2; i < 8; i++) if (bytes8[i] !== 0) return -1;
  const method = bytes8[0] >> 6;
  if (method === 0) return (bytes8[0] & 0x3f) === 0 ? bytes8[1] : -1;
  if (method === 1) return ((bytes8[0] & 0x3f) << 8) | bytes8[1];
  return -1;
}

/** The LUN field of a BHS (a big-endian 64-bit value) as an LU number: decodeLun() over its 8 bytes. */
export function lunFromField(field: bigint): number {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(field);
  return decodeLun(b);
}

/** The BHS LUN field for an LU number: encodeLun() as a 64-bit value. */
export function lunField(n: number): bigint {
  return encodeLun(n).readBigUInt64BE(0);
}
