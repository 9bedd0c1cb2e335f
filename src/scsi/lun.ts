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

/**
 * LUN number of the 8 bytes at `at`, or -1 for an addressing this target does not use (reported as LOGICAL UNIT
 * NOT SUPPORTED). An offset rather than a subarray: every SCSI command decodes its BHS's LUN field.
 */
export function decodeLun(bytes: Buffer, at = 0): number {
  if (bytes.length < at + 8) return -1;
  for (let i = at + 2; i < at + 8; i++) if (bytes[i] !== 0) return -1;
  const method = bytes[at] >> 6;
  if (method === 0) return (bytes[at] & 0x3f) === 0 ? bytes[at + 1] : -1;
  if (method === 1) return ((bytes[at] & 0x3f) << 8) | bytes[at + 1];
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
