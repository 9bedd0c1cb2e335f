/** Parse an operator's size: a byte count or a number with K/M/G/T/P (binary, optional B/iB) suffix. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`invalid size '${text}' (expected e.g. 512M, 1G, 2T)`);
  const exp = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  const bytes = Math.round(parseFloat(m[1]) * 1024 ** exp);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`invalid size '${text}'`);
  return bytes;
}
