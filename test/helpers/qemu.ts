/**
 * Helpers for driving nodetgt with QEMU's userspace iSCSI initiator (qemu-img, qemu-io over libiscsi) and for
 * checking the bytes that come back.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { run, type RunResult } from './run';

/** Run a QEMU tool; throw with the full command line, exit status, stdout and stderr unless it exits 0. */
export async function runQemu(
  cmd: string,
  args: string[],
  timeoutMs = 60000,
): Promise<RunResult & { ms: number }> {
  const t0 = Date.now();
  const r = await run(cmd, args, timeoutMs);
  const ms = Date.now() - t0;
  if (r.code !== 0 || r.timedOut) {
    const how = r.timedOut
      ? `timed out after ${timeoutMs} ms`
      : r.signal
        ? `killed by ${r.signal}`
        : `exited ${r.code}`;
    throw new Error(
      `${cmd} ${how} after ${ms} ms\n  command: ${cmd} ${args.map(shellQuote).join(' ')}\n` +
        `  stdout: ${tail(r.stdout)}\n  stderr: ${tail(r.stderr)}`,
    );
  }
  return { ...r, ms };
}

function tail(s: string, max = 4000): string {
  const t = s.trim();
  if (!t) return '(empty)';
  return t.length > max ? `...${t.slice(-max)}` : t;
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

export interface IscsiOpts {
  port: number;
  target: string;
  lun: number;
  /** A distinct initiator name makes a distinct session (qemu's default name is the same for every process). */
  initiatorName?: string;
  /**
   * Cap every request QEMU sends to this LUN at this many bytes. QEMU's block layer splits any larger read or
   * write into max-transfer sized fragments before they reach the iscsi driver (blkdebug's `max-transfer`
   * option), so each SCSI READ/WRITE carries at most this much.
   */
  maxTransfer?: number;
}

/** The `--image-opts` / `--target-image-opts` string for a LUN, optionally behind blkdebug to cap request size. */
export function iscsiImageOpts(o: IscsiOpts): string {
  const iscsi = [
    'driver=iscsi',
    'transport=tcp',
    `portal=127.0.0.1:${o.port}`,
    `target=${o.target}`,
    `lun=${o.lun}`,
    ...(o.initiatorName ? [`initiator-name=${o.initiatorName}`] : []),
  ];
  if (o.maxTransfer === undefined) return iscsi.join(',');
  return [`driver=blkdebug`, `max-transfer=${o.maxTransfer}`, ...iscsi.map((kv) => `image.${kv}`)].join(',');
}

/** Fill a new file with `size` bytes from the CSPRNG. */
export function writeRandomFile(file: string, size: number): void {
  const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(chunk.length, size - done);
      crypto.randomFillSync(chunk, 0, n);
      fs.writeSync(fd, chunk, 0, n, done);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** SHA-256 of a whole file, hex. */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/**
 * Byte-for-byte comparison of two files; null when identical, else a description of the size difference or of
 * the first differing byte and how many 4 KiB blocks differ.
 */
export function describeDifference(a: string, b: string): string | null {
  const sa = fs.statSync(a).size;
  const sb = fs.statSync(b).size;
  if (sa !== sb) return `sizes differ: ${a} has ${sa} bytes, ${b} has ${sb}`;
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  const CH = 4 * 1024 * 1024;
  const ba = Buffer.allocUnsafe(CH);
  const bb = Buffer.allocUnsafe(CH);
  let first = -1;
  let badBlocks = 0;
  try {
    for (let off = 0; off < sa; off += CH) {
      const n = Math.min(CH, sa - off);
      fs.readSync(fa, ba, 0, n, off);
      fs.readSync(fb, bb, 0, n, off);
      if (ba.subarray(0, n).equals(bb.subarray(0, n))) continue;
      for (let i = 0; i < n; i += 4096) {
        const e = Math.min(n, i + 4096);
        if (ba.subarray(i, e).equals(bb.subarray(i, e))) continue;
        badBlocks++;
        if (first < 0) {
          let j = i;
          while (ba[j] === bb[j]) j++;
          first = off + j;
        }
      }
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
  if (first < 0) return null;
  return `${a} and ${b} differ: first at byte ${first} (LBA ${Math.floor(first / 512)}), ${badBlocks} of ${sa / 4096} 4 KiB blocks differ`;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
