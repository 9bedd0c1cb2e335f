/**
 * CRC32C (Castagnoli) in plain TypeScript, one table lookup per byte: the reference the native
 * implementations are tested against, and a baseline for benchmarks. Not used on the data path.
 *
 * Parameters (RFC 3720 sec. 12.1, RFC 7143 sec. 13.1): reflected polynomial 0x82F63B78, register
 * initialised to all ones, result complemented. `prev` continues a previous result over concatenated
 * input: crc32cRef(b, crc32cRef(a)) === crc32cRef(a ++ b).
 */
const POLY = 0x82f63b78;

const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  return t;
})();

export function crc32cRef(buf: Uint8Array, prev = 0): number {
  let c = ~prev;
  for (let i = 0; i < buf.length; i++) c = (c >>> 8) ^ TABLE[(c ^ buf[i]) & 0xff];
  return ~c >>> 0;
}
