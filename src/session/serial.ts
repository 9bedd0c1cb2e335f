/** 32-bit serial number arithmetic (RFC 1982) for CmdSN, StatSN, DataSN and friends. */
export function snLt(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < 0x80000000) || (a > b && a - b > 0x80000000));
}
export function snLe(a: number, b: number): boolean {
  return a === b || snLt(a, b);
}
export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
