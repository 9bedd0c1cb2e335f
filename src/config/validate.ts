/**
 * The checks every part of the config schema makes: one error type that names the setting, and readers of a
 * setting's value that refuse the wrong type or range with a message starting with the setting's quoted name.
 */

/**
 * What the operator must fix. `where` is the setting's place in the config ("config.targets[0].luns[1]") and
 * `key` the setting in it, so that a config read from a file can be reported with the file's line.
 */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly where?: string,
    readonly key?: string,
  ) {
    super(message);
  }
}

export function fail(where: string, msg: string): never {
  // Messages about one setting start with its quoted name: that is the key a file line is looked up for.
  throw new ConfigError(`${where}: ${msg}`, where, /^'(\w+)'/.exec(msg)?.[1]);
}

export function asObject(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'expected an object');
  return v as Record<string, unknown>;
}

export function checkKeys(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(where, `unknown setting '${k}'`);
}

export function optInt(
  o: Record<string, unknown>,
  key: string,
  def: number,
  min: number,
  max: number,
  where: string,
): number {
  const v = o[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    fail(where, `'${key}' must be an integer from ${min} to ${max}`);
  return v;
}

export function optBool(o: Record<string, unknown>, key: string, where: string): boolean {
  const v = o[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') fail(where, `'${key}' must be true or false`);
  return v;
}

export function strList(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) fail(where, 'expected a list of strings');
  return v as string[];
}
