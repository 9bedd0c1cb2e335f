/**
 * Where the running configuration came from, for changes made over the control socket: the config file as
 * the operator wrote it (read again at each change, written back after it), or, for a target started without
 * one (the embedded default, --lun flags), a document kept in memory that changes live and is never saved.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeJsonError } from './json-location';
import type { Config } from './schema';

export interface RawConfig {
  /** The document, parsed as it is (relative paths, sizes as written, accounts by name). */
  raw: unknown;
  /** The file's text (its indentation is kept on write-back); '' for an in-memory document. */
  text: string;
  /** The file to write the changed document back to, or null. */
  file: string | null;
  /** Why there is no file to write (with file null): "no config file". */
  notPersisted?: string;
}

export interface ConfigSource {
  read(): Promise<RawConfig>;
  /** The running configuration this document makes, as `nodetgt serve` builds it (command-line flags too). */
  build(raw: unknown): Config;
  /** A change applied live to an in-memory document: later changes start from it. */
  keep(raw: unknown): void;
}

/**
 * The file, read at each change: a hand edit made since the last start or SIGHUP is part of what the next
 * change applies (the answer lists it among the applied).
 */
export function fileSource(file: string, build: (raw: unknown) => Config): ConfigSource {
  const abs = path.resolve(file);
  return {
    async read() {
      const text = await fs.promises.readFile(abs, 'utf8');
      try {
        return { raw: JSON.parse(text) as unknown, text, file: abs };
      } catch (e) {
        throw new Error(`${abs}:${describeJsonError(text, e as Error)} (not valid JSON)`);
      }
    },
    build,
    keep: () => undefined,
  };
}

export function memorySource(raw: unknown, why: string, build: (raw: unknown) => Config): ConfigSource {
  let doc = structuredClone(raw);
  return {
    read: () => Promise.resolve({ raw: structuredClone(doc), text: '', file: null, notPersisted: why }),
    build,
    keep(next) {
      doc = structuredClone(next);
    },
  };
}
