/**
 * Where things are in a JSON config file, for error messages an operator can act on: the line and column of a
 * syntax error (JSON.parse reports a character offset, and only on newer Node versions a line), and the line
 * of a setting named by its place ("config.targets[0].luns[1]" and key "size").
 */

/** Line and column (1-based) of character offset `pos` in `text`. */
export function lineColumn(text: string, pos: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(pos, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

/** JSON.parse's complaint as "LINE:COLUMN: what" (the end of the text when it ran out). */
export function describeJsonError(text: string, e: Error): string {
  const m = /at position (\d+)/.exec(e.message);
  const pos = m ? Number(m[1]) : text.length;
  const { line, column } = lineColumn(text, pos);
  const what = e.message.replace(/\s*(in JSON )?at position \d+( \(line \d+ column \d+\))?/, '');
  return `${line}:${column}: ${what}`;
}

/** Splits "config.targets[0].luns[1]" into ['targets', 0, 'luns', 1] (the leading "config" is the root). */
function parseWhere(where: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of where.replace(/^config\.?/, '').matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    out.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return out;
}

/**
 * The line of the setting `key` in the object at `where` in the (valid) JSON `text`; the line of the nearest
 * enclosing value found when the key itself is absent (a required setting left out), or undefined.
 */
export function settingLine(text: string, where: string, key?: string): number | undefined {
  const want = parseWhere(where);
  if (key !== undefined) want.push(key);
  const starts = new Map<string, number>();
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const str = (): string => {
    const start = i;
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (at: Array<string | number>): void => {
    ws();
    if (text[i] === '{' || text[i] === '[') {
      const isObject = text[i] === '{';
      i++;
      for (let n = 0; ; n++) {
        ws();
        if (text[i] === '}' || text[i] === ']') break;
        let child: Array<string | number>;
        if (isObject) {
          const keyAt = i;
          child = [...at, str()];
          starts.set(JSON.stringify(child), keyAt);
          ws();
          i++; // ':'
        } else {
          ws();
          child = [...at, n];
          starts.set(JSON.stringify(child), i);
        }
        value(child);
        ws();
        if (text[i] === ',') i++;
      }
      i++;
    } else if (text[i] === '"') str();
    else while (i < text.length && !/[\s,\]}]/.test(text[i])) i++;
  };
  try {
    value([]);
  } catch {
    return undefined;
  }
  for (let n = want.length; n > 0; n--) {
    const pos = starts.get(JSON.stringify(want.slice(0, n)));
    if (pos !== undefined) return lineColumn(text, pos).line;
  }
  return undefined;
}
