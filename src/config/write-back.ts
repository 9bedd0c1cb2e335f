/**
 * Writing the config file back after a live change, so that a crash at any moment leaves either the old file
 * or the new one, never a torn mix: a temporary file in the same directory (same file system, so rename is
 * atomic), written and fsynced, given the old file's mode and owner, renamed over the old one, and the
 * directory fsynced so the rename itself survives a power cut.
 *
 * The temporary file is created 0600, so a file holding CHAP secrets is never readable by others even for a
 * moment; a file that holds secrets after the change is written 0600-or-tighter whatever its mode was.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The file system calls used, replaceable in tests to make one of them fail. */
export interface WriteBackIo {
  open: typeof fs.promises.open;
  rename: typeof fs.promises.rename;
}

const REAL_IO: WriteBackIo = { open: fs.promises.open, rename: fs.promises.rename };

/** Does the document hold a CHAP secret anywhere? */
export function holdsSecrets(doc: unknown): boolean {
  if (Array.isArray(doc)) return doc.some(holdsSecrets);
  if (typeof doc !== 'object' || doc === null) return false;
  return Object.entries(doc).some(([k, v]) => (k === 'secret' && typeof v === 'string') || holdsSecrets(v));
}

/** Lines longer than this are broken up; shorter lists and objects stay on one line, as people write them. */
const WIDTH = 100;

/**
 * The document as JSON in the shape of `original` (the file's old text): its indentation (a compact one-line
 * file stays compact), short lists and objects on one line, its final newline. Key order is the document's,
 * which the edit kept.
 */
export function formatLike(doc: unknown, original: string): string {
  const m = /^\{\s*?\n([ \t]+)\S/.exec(original);
  const compact = !m && original.trim() !== '' && !original.trim().includes('\n');
  const unit = m ? m[1] : '  ';
  const inline = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(inline).join(', ')}]`
      : typeof v === 'object' && v !== null
        ? Object.keys(v).length === 0
          ? '{}'
          : `{ ${Object.entries(v)
              .map(([k, x]) => `${JSON.stringify(k)}: ${inline(x)}`)
              .join(', ')} }`
        : JSON.stringify(v);
  const block = (v: unknown, pad: string, used: number): string => {
    if (typeof v !== 'object' || v === null) return JSON.stringify(v);
    const one = inline(v);
    if (pad !== '' && used + one.length <= WIDTH) return one;
    const inner = pad + unit;
    const items = Array.isArray(v)
      ? v.map((x) => inner + block(x, inner, inner.length))
      : Object.entries(v).map(([k, x]) => {
          const head = `${inner}${JSON.stringify(k)}: `;
          return head + block(x, inner, head.length);
        });
    if (items.length === 0) return Array.isArray(v) ? '[]' : '{}';
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    return `${open}\n${items.join(',\n')}\n${pad}${close}`;
  };
  const text = compact ? JSON.stringify(doc) : block(doc, '', 0);
  return original.endsWith('\n') || original.trim() === '' ? `${text}\n` : text;
}

/**
 * Replace `file` (followed through a symbolic link: the link stays) with `text`. Rejects with a message
 * naming the file; on failure the old file is untouched and no temporary file is left behind.
 */
export async function writeFileAtomic(
  file: string,
  text: string,
  secrets: boolean,
  io: WriteBackIo = REAL_IO,
): Promise<void> {
  const real = await fs.promises.realpath(file);
  const st = await fs.promises.stat(real);
  const mode = secrets ? st.mode & 0o7700 : st.mode & 0o7777;
  const dir = path.dirname(real);
  const tmp = path.join(dir, `.${path.basename(real)}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  try {
    const h = await io.open(tmp, 'wx', 0o600);
    created = true;
    try {
      await h.writeFile(text, 'utf8');
      await h.chown(st.uid, st.gid).catch((e: NodeJS.ErrnoException) => {
        // Only root may give a file away; a non-root target writes its own file, already its owner.
        if (e.code !== 'EPERM') throw e;
      });
      await h.chmod(mode);
      await h.sync();
    } finally {
      await h.close();
    }
    await io.rename(tmp, real);
    created = false;
    await syncDirectory(dir);
  } catch (e) {
    if (created) await fs.promises.unlink(tmp).catch(() => undefined);
    throw new Error(`cannot write ${real}: ${(e as Error).message}`);
  }
}

/** fsync a directory: what makes a rename (or a new file) in it survive a power cut. */
export async function syncDirectory(dir: string): Promise<void> {
  const d = await fs.promises.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
