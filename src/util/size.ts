/**
 * Parse an operator's size: a number with a K/M/G/T/P (binary, optional B/iB) suffix, or a byte count written
 * with an explicit B ("4096B"). A bare number is refused: "100" meant as 100 GiB would otherwise make a
 * 100-byte disk, and nobody reads a config and notices.
 */
export function parseSize(text: string): number {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`invalid size '${text}' (expected e.g. 512M, 1G, 2T)`);
  if (m[2] === '' && m[3] === undefined)
    throw new Error(
      `size '${text}' has no unit (write e.g. ${text.trim()}M or ${text.trim()}G, or ${text.trim()}B for bytes)`,
    );
  const exp = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  const bytes = Math.round(parseFloat(m[1]) * 1024 ** exp);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`invalid size '${text}' (must be above 0)`);
  return bytes;
}
