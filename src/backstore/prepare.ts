/**
 * Run once on the portal thread before any worker starts: create missing sparse backing files at their
 * configured size and check that every path is usable, so an operator sees a clear error at start-up
 * rather than a failed login later.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config, LunConfig } from '../config/schema';
import { ConfigError } from '../config/schema';

async function prepareLun(target: string, l: LunConfig): Promise<void> {
  if (l.backstore !== 'file') return;
  const where = `target ${target} LUN ${l.lun} (${l.path})`;
  let st: fs.Stats | null = null;
  try {
    st = await fs.promises.stat(l.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new ConfigError(`${where}: ${(e as Error).message}`);
  }
  if (st === null) {
    if (l.size === undefined)
      throw new ConfigError(`${where}: file does not exist and no size was given to create it`);
    if (l.readOnly) throw new ConfigError(`${where}: a read-only LUN needs an existing file`);
    try {
      await fs.promises.mkdir(path.dirname(l.path), { recursive: true });
      const fh = await fs.promises.open(l.path, 'wx', 0o600);
      await fh.truncate(l.size);
      await fh.close();
    } catch (e) {
      throw new ConfigError(`${where}: cannot create backing file: ${(e as Error).message}`);
    }
    return;
  }
  if (!st.isFile() && !st.isBlockDevice())
    throw new ConfigError(`${where}: not a regular file or block device`);
  try {
    await fs.promises.access(l.path, l.readOnly ? fs.constants.R_OK : fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    throw new ConfigError(`${where}: not ${l.readOnly ? 'readable' : 'readable and writable'} by this user`);
  }
  if (st.isFile() && l.size !== undefined && st.size !== l.size)
    throw new ConfigError(`${where}: existing file is ${st.size} bytes but the configured size is ${l.size}`);
}

export async function prepareBackingFiles(config: Config): Promise<void> {
  for (const t of config.targets) for (const l of t.luns) await prepareLun(t.name, l);
}
