/**
 * The two targets under test, started privately on loopback ports and stopped on the way out:
 * tgtd (its own control socket, a target with the disk LUNs at 1..n; LUN 0 is its controller) and
 * nodetgt (a JSON config with the same backing files at LUNs 0..n-1).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { probe, freePort, listeningAddresses, run, runSync, sleep, track, waitFor } from './sys';

export type Kind = 'tmpfs' | 'disk' | 'null' | 'rbd';

/** A Ceph RBD image (bench/lib/rbd.ts): where it is and how to reach its cluster. */
export interface RbdSpec {
  pool: string;
  image: string;
  conf: string;
}

export interface Backing {
  kind: Kind;
  /** Backing file; absent for the null backstore. */
  file?: string;
  /** Open with O_DIRECT on both targets. */
  direct: boolean;
  /** The image of an 'rbd' backing. */
  rbd?: RbdSpec;
}

export abstract class Target {
  abstract readonly name: string;
  child?: ChildProcess;
  port = 0;
  /** Why the process is gone, when it went away on its own. */
  died?: string;
  protected stopping = false;
  protected readonly luns = new Map<Kind, number>();
  /** Our own readiness probes (connect, close): their log lines are not the target's fault. */
  protected readonly probePeers: string[] = [];

  constructor(
    readonly iqn: string,
    readonly logFile: string,
  ) {}

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  get alive(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The LUN number a backing is served at. */
  lunOf(kind: Kind): number | undefined {
    return this.luns.get(kind);
  }

  url(kind: Kind): string {
    const lun = this.luns.get(kind);
    if (lun === undefined) throw new Error(`${this.name} has no ${kind} LUN`);
    return `iscsi://127.0.0.1:${this.port}/${this.iqn}/${lun}`;
  }

  abstract start(backings: Backing[]): Promise<void>;
  protected abstract doStop(): Promise<void>;
  private stopped?: Promise<void>;

  /** Stop the target; a second call while the first is under way waits for the same stop. */
  stop(): Promise<void> {
    this.stopped ??= this.doStop().finally(() => (this.stopped = undefined));
    return this.stopped;
  }
  /** Last resort on process exit: synchronous, no waiting. */
  abstract killSync(): void;
  /** Files the target leaves behind if killed (control sockets, config). */
  abstract files(): string[];

  protected watch(child: ChildProcess): void {
    this.child = track(child);
    child.once('exit', (code, signal) => {
      if (!this.stopping) this.died = `exited unexpectedly (code ${code}, signal ${signal})`;
    });
  }

  protected async waitExit(ms: number): Promise<boolean> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return true;
    return Promise.race([
      new Promise<boolean>((r) => c.once('exit', () => r(true))),
      sleep(ms).then(() => false),
    ]);
  }

  /** The log lines at warning level or above (both targets write those words). */
  logTail(lines = 20, filter = /warn|error|fail|fatal|abort/i): string[] {
    let text = '';
    try {
      text = fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter((l) => filter.test(l) && !this.probePeers.some((p) => `${l} `.includes(p)))
      .slice(-lines);
  }
}

/**
 * A control-socket number for a private tgtd (-C): tgtd refuses any above 32767 ("out of range"), which a draw
 * from 20000-39999 gave a third of the time, using up start()'s attempts. `random` is Math.random's range.
 */
export function tgtdControlNumber(random: number = Math.random()): number {
  return 20_000 + Math.floor(random * 12_000);
}

export class Tgtd extends Target {
  readonly name = 'tgtd';
  private ctl = 0;

  private async adm(args: string[]): Promise<void> {
    const r = await run('tgtadm', ['-C', String(this.ctl), ...args], 10_000);
    if (r.code !== 0) throw new Error(`tgtadm ${args.join(' ')}: ${(r.stderr || r.stdout).trim()}`);
  }

  /** Set one of the target's iSCSI parameters (e.g. MaxConnections) before initiators log in. */
  setParam(name: string, value: string): Promise<void> {
    return this.adm([
      '--lld',
      'iscsi',
      '--mode',
      'target',
      '--op',
      'update',
      '--tid',
      '1',
      '--name',
      name,
      '--value',
      value,
    ]);
  }

  async start(backings: Backing[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      this.port = await freePort();
      do this.ctl = tgtdControlNumber();
      while (fs.existsSync(`/var/run/tgtd/socket.${this.ctl}`));
      fs.appendFileSync(this.logFile, `--- tgtd -C ${this.ctl} portal=127.0.0.1:${this.port}\n`);
      const fd = fs.openSync(this.logFile, 'a');
      const child = spawn(
        'tgtd',
        ['-f', '-C', String(this.ctl), '--iscsi', `portal=127.0.0.1:${this.port}`],
        { stdio: ['ignore', fd, fd], detached: true },
      );
      fs.closeSync(fd);
      this.stopping = false;
      this.died = undefined;
      this.watch(child);
      try {
        await waitFor(
          'tgtd control socket',
          async () => {
            if (!this.alive) throw new Error(`tgtd ${this.died ?? 'exited'}`);
            return (
              (await run('tgtadm', ['-C', String(this.ctl), '--mode', 'system', '--op', 'show'], 5000))
                .code === 0
            );
          },
          10_000,
        );
        // tgtd falls back to the wildcard address on port 3260 when it cannot bind the portal we
        // gave it: refuse anything but our loopback address.
        const addrs = listeningAddresses(this.pid);
        if (addrs.length !== 1 || addrs[0] !== `127.0.0.1:${this.port}`)
          throw new Error(`tgtd listens on [${addrs.join(', ')}], not 127.0.0.1:${this.port}`);
        break;
      } catch (e) {
        this.stopping = true;
        this.child?.kill('SIGKILL');
        await this.waitExit(3000);
        this.removeSockets();
        if (attempt >= 3) throw e;
      }
    }
    await this.adm(['--lld', 'iscsi', '--op', 'new', '--mode', 'target', '--tid', '1', '-T', this.iqn]);
    let lun = 1;
    for (const b of backings) {
      const args = [
        '--lld',
        'iscsi',
        '--op',
        'new',
        '--mode',
        'logicalunit',
        '--tid',
        '1',
        '--lun',
        String(lun),
      ];
      if (b.kind === 'null') args.push('-b', 'null', '--bstype', 'null');
      else if (b.rbd) {
        // tgt's bs_rbd (package tgt-rbd): conf= and id= in --bsopts, the image as pool/image.
        args.push('-b', `${b.rbd.pool}/${b.rbd.image}`, '--bstype', 'rbd', '--bsopts', `conf=${b.rbd.conf}`);
      } else args.push('-b', b.file!, ...(b.direct ? ['--bsoflags', 'direct'] : []));
      await this.adm(args);
      this.luns.set(b.kind, lun++);
    }
    await this.adm(['--lld', 'iscsi', '--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
  }

  protected async doStop(): Promise<void> {
    if (!this.child) return;
    this.stopping = true;
    if (this.alive) {
      const del = ['--lld', 'iscsi', '--mode', 'target', '--op', 'delete', '--force', '--tid', '1'];
      await run('tgtadm', ['-C', String(this.ctl), ...del], 10_000);
      await run('tgtadm', ['-C', String(this.ctl), '--mode', 'system', '--op', 'delete'], 10_000);
      if (!(await this.waitExit(5000))) {
        this.child.kill('SIGKILL');
        await this.waitExit(3000);
      }
    }
    this.removeSockets();
  }

  killSync(): void {
    if (!this.alive) return;
    this.stopping = true;
    runSync(
      'tgtadm',
      [
        '-C',
        String(this.ctl),
        '--lld',
        'iscsi',
        '--mode',
        'target',
        '--op',
        'delete',
        '--force',
        '--tid',
        '1',
      ],
      3000,
    );
    runSync('tgtadm', ['-C', String(this.ctl), '--mode', 'system', '--op', 'delete'], 3000);
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    this.removeSockets();
  }

  files(): string[] {
    return this.ctl ? [`/var/run/tgtd/socket.${this.ctl}`, `/var/run/tgtd/socket.${this.ctl}.lock`] : [];
  }

  private removeSockets(): void {
    for (const f of this.files()) fs.rmSync(f, { force: true });
  }
}

export class Nodetgt extends Target {
  readonly name = 'nodetgt';

  constructor(
    iqn: string,
    logFile: string,
    private readonly repo: string,
    private readonly workDir: string,
    private readonly workers: number,
    /** Extra node flags, e.g. --cpu-prof. */
    private readonly nodeArgs: string[] = [],
  ) {
    super(iqn, logFile);
  }

  /** Its /metrics endpoint on 127.0.0.1: the latency histograms are read from it around each run. */
  metricsPort = 0;

  async start(backings: Backing[]): Promise<void> {
    this.port = await freePort();
    this.metricsPort = await freePort();
    const luns = backings.map((b, i) => {
      this.luns.set(b.kind, i);
      if (b.rbd) {
        const { pool, image, conf } = b.rbd;
        return { lun: i, backstore: 'rbd', pool, image, cephConf: conf };
      }
      return b.kind === 'null'
        ? { lun: i, backstore: 'null', size: '1G' }
        : { lun: i, path: b.file, direct: b.direct };
    });
    const config = {
      portals: [`127.0.0.1:${this.port}`],
      metrics: `127.0.0.1:${this.metricsPort}`,
      workers: this.workers,
      targets: [{ name: this.iqn, luns }],
      // Settings to compare (e.g. '{"idlePoll":0}'), merged over these.
      ...(process.env.NODETGT_BENCH_CONFIG ? (JSON.parse(process.env.NODETGT_BENCH_CONFIG) as object) : {}),
    };
    const cfgFile = path.join(this.workDir, `nodetgt-${this.port}.json`);
    fs.writeFileSync(cfgFile, JSON.stringify(config, null, 2));
    this.cfgFile = cfgFile;
    fs.appendFileSync(this.logFile, `--- nodetgt ${this.nodeArgs.join(' ')} --config ${cfgFile}\n`);
    const fd = fs.openSync(this.logFile, 'a');
    const child = spawn(
      process.execPath,
      [...this.nodeArgs, path.join(this.repo, 'bin/nodetgt.js'), 'serve', '--config', cfgFile],
      {
        stdio: ['ignore', fd, fd],
        detached: true,
        cwd: this.workDir,
        env: { ...process.env, NODETGT_LOG: process.env.NODETGT_LOG ?? 'warn' },
      },
    );
    fs.closeSync(fd);
    this.watch(child);
    await waitFor(
      'nodetgt portal',
      async () => {
        if (!this.alive)
          throw new Error(`nodetgt ${this.died ?? 'exited'}; log: ${this.logTail(5, /./).join(' | ')}`);
        const local = await probe(this.port);
        if (local) this.probePeers.push(`peer=127.0.0.1:${local} `);
        return local !== 0;
      },
      15_000,
    );
  }

  private cfgFile = '';

  files(): string[] {
    return this.cfgFile ? [this.cfgFile] : [];
  }

  protected async doStop(): Promise<void> {
    if (!this.child) return;
    this.stopping = true;
    if (this.cfgFile) fs.rmSync(this.cfgFile, { force: true });
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    if (!(await this.waitExit(10_000))) {
      fs.appendFileSync(this.logFile, '--- bench: no exit 10 s after SIGTERM, sending SIGKILL\n');
      this.child.kill('SIGKILL');
      await this.waitExit(3000);
    }
  }

  killSync(): void {
    if (!this.alive) return;
    this.stopping = true;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
