/**
 * Two network namespaces joined by a veth pair, for tests and benchmarks that need a real link with its own
 * MTU: both ends live inside namespaces made here, so no traffic ever reaches the host's interfaces. Needs
 * root and iproute2.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface NsPair {
  /** Namespace names: the target's side and the initiator's. */
  a: string;
  b: string;
  ifA: string;
  ifB: string;
  /** 10.231.7.1 (a) and 10.231.7.2 (b), a /30 private to the pair. */
  addrA: string;
  addrB: string;
  network: string;
  /** The argv prefix that runs a command inside a namespace. */
  exec(ns: string): string[];
  setMtu(mtuA: number, mtuB: number): void;
  /** Deletes both namespaces (and so the veth pair); safe to call twice. */
  destroy(): void;
}

/** Why the caller cannot create namespaces, or null when it can. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0)
    return 'must run as root (ip netns add, veth pairs); CI runs the tests as root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'iproute2 (the ip command) is not installed: scripts/install-deps.sh --test';
  }
  return null;
}

let made = 0;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

export function createNsPair(tag: string, mtuA = 1500, mtuB = 1500): NsPair {
  const id = `${process.pid % 100000}${made++}`;
  const a = `ntgt-${tag}-${id}-a`;
  const b = `ntgt-${tag}-${id}-b`;
  // Interface names are at most 15 bytes and global until moved into a namespace.
  const ifA = `nta${id}`.slice(0, 15);
  const ifB = `ntb${id}`.slice(0, 15);
  const pair: NsPair = {
    a,
    b,
    ifA,
    ifB,
    addrA: '10.231.7.1',
    addrB: '10.231.7.2',
    network: '10.231.7.0/30',
    exec: (ns) => ['ip', 'netns', 'exec', ns],
    setMtu(mtuA2, mtuB2) {
      ip('-n', a, 'link', 'set', 'dev', ifA, 'mtu', String(mtuA2));
      ip('-n', b, 'link', 'set', 'dev', ifB, 'mtu', String(mtuB2));
    },
    destroy() {
      for (const ns of [a, b])
        try {
          ip('netns', 'del', ns);
        } catch {
          // already gone
        }
    },
  };
  try {
    ip('netns', 'add', a);
    ip('netns', 'add', b);
    // Created directly inside the namespaces: the pair never exists on the host's side.
    ip('link', 'add', ifA, 'netns', a, 'type', 'veth', 'peer', 'name', ifB, 'netns', b);
    ip('-n', a, 'addr', 'add', `${pair.addrA}/30`, 'dev', ifA);
    ip('-n', b, 'addr', 'add', `${pair.addrB}/30`, 'dev', ifB);
    for (const [ns, dev] of [
      [a, ifA],
      [b, ifB],
    ]) {
      ip('-n', ns, 'link', 'set', 'dev', 'lo', 'up');
      ip('-n', ns, 'link', 'set', 'dev', dev, 'up');
    }
    pair.setMtu(mtuA, mtuB);
  } catch (e) {
    pair.destroy();
    const err = e as Error & { stderr?: Buffer };
    throw new Error(`cannot create the namespace pair: ${err.stderr?.toString().trim() || err.message}`);
  }
  return pair;
}

/**
 * A config file in `dir` for `nodetgt serve` in namespace A: a portal on A's address port 3260, one target
 * with a null LUN of `size`, open to the pair's network only; returns its path.
 */
export function writeNsTargetConfig(
  pair: NsPair,
  dir: string,
  iqn: string,
  size: string,
  extra: Record<string, unknown> = {},
): string {
  const file = path.join(dir, 'config.json');
  const target = {
    name: iqn,
    luns: [{ lun: 0, backstore: 'null', size }],
    acl: { networks: [pair.network] },
  };
  const config = { portals: [`${pair.addrA}:3260`], nopInInterval: 0, stateDir: path.join(dir, 'state') };
  fs.writeFileSync(file, JSON.stringify({ ...config, targets: [target], ...extra }));
  return file;
}
