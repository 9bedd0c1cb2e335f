/**
 * A small multipath client for the ALUA tests, behaving as dm-multipath with the ALUA device handler does: one
 * iSCSI session per path (gateway), all to the same target IQN; the paths are one device when VPD 83h gives the
 * same NAA designator; each path's target port group comes from VPD 83h and the groups' states from REPORT TARGET
 * PORT GROUPS. I/O goes to a path whose group is active/optimized (else active/non-optimized). When that path
 * fails (connection lost, or NOT READY LOGICAL UNIT NOT ACCESSIBLE), the client asks the paths left for RTPG again,
 * retrying (queue_if_no_path) until a group is active, then sends the command again there.
 */
import { TestInitiator, type ScsiOptions, type ScsiResult } from './initiator';
import { AO, ANO, identityOf83, inquiryCdb, parseRtpg, rtpgCdb } from './alua';
import { senseOf } from './live';

export interface Path {
  name: string;
  port: number;
  ini: TestInitiator | null;
  /** Target port group of the path's port (VPD 83h). */
  group?: number;
  failed: boolean;
}

export interface MultipathOptions {
  target: string;
  initiatorName: string;
  /** How long to wait for an active path before giving up (ms). */
  noPathTimeoutMs?: number;
  /** Pause between RTPG polls while no path is active (ms). */
  pollMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** NOT READY, LOGICAL UNIT NOT ACCESSIBLE (ALUA transition, standby, unavailable): this path is not for I/O now. */
function inaccessible(r: ScsiResult): boolean {
  return (
    r.status === 2 &&
    !!r.sense &&
    (r.sense[2] & 0x0f) === 2 &&
    r.sense[12] === 0x04 &&
    [0x0a, 0x0b, 0x0c].includes(r.sense[13])
  );
}

const isUnitAttention = (r: ScsiResult) => r.status === 2 && !!r.sense && (r.sense[2] & 0x0f) === 6;

export class MultipathClient {
  readonly paths: Path[];
  private active: Path | null = null;
  /** The NAA designator every path reported (hex). */
  naa = '';
  /** What happened, in order: path failures, RTPG answers, switches, unit attentions seen. */
  readonly events: string[] = [];

  private constructor(
    ports: Array<{ name: string; port: number }>,
    private readonly o: MultipathOptions,
  ) {
    this.paths = ports.map((p) => ({ ...p, ini: null, failed: false }));
  }

  /** Log every path in, check that they are one device, and pick the active path. */
  static async open(
    ports: Array<{ name: string; port: number }>,
    o: MultipathOptions,
  ): Promise<MultipathClient> {
    const mp = new MultipathClient(ports, o);
    const naas = new Set<string>();
    for (const [i, p] of mp.paths.entries()) {
      const ini = await TestInitiator.connect(p.port);
      const isid = Buffer.from([0x80, 0, 0, 0x4d, 0x50, i + 1]); // one ISID per path, as open-iscsi's ifaces
      const r = await ini.login({ targetName: o.target, initiatorName: o.initiatorName, isid });
      if (r.status !== 0) throw new Error(`path ${p.name}: login status 0x${r.status.toString(16)}`);
      p.ini = ini;
      const vpd = await mp.retryUa(p, inquiryCdb(true, 0x83), { edtl: 1024, read: true });
      const id = identityOf83(vpd.data);
      p.group = id.group;
      naas.add(id.naa);
    }
    if (naas.size !== 1)
      throw new Error(`the paths are not one device: NAA designators ${[...naas].join(', ')}`);
    mp.naa = [...naas][0];
    await mp.choosePath();
    return mp;
  }

  /** The path I/O goes to now. */
  get current(): Path | null {
    return this.active;
  }

  /** A command, answered through the active path; on path failure, through the next one RTPG names active. */
  async scsi(cdb: Buffer, opts: ScsiOptions): Promise<ScsiResult> {
    for (;;) {
      const p = this.active ?? (await this.choosePath());
      let r: ScsiResult;
      try {
        r = await p.ini!.scsi(cdb, opts);
      } catch (e) {
        this.fail(p, `connection: ${(e as Error).message}`);
        continue;
      }
      if (isUnitAttention(r)) {
        // As the ALUA handler does on 2A/06 and friends: note it, re-read the states, send the command again.
        this.events.push(`${p.name}: unit attention ${senseOf(r)}`);
        await this.choosePath();
        continue;
      }
      if (inaccessible(r)) {
        this.events.push(`${p.name}: ${senseOf(r)}`);
        this.active = null;
        continue;
      }
      return r;
    }
  }

  close(): void {
    for (const p of this.paths) p.ini?.socket.destroy();
  }

  private fail(p: Path, why: string): void {
    if (!p.failed) this.events.push(`${p.name} failed (${why})`);
    p.failed = true;
    p.ini?.socket.destroy();
    if (this.active === p) this.active = null;
  }

  /** A command on one path, sent again while it answers with a unit attention (as a host's mid layer does). */
  private async retryUa(p: Path, cdb: Buffer, opts: ScsiOptions): Promise<ScsiResult> {
    for (let i = 0; i < 8; i++) {
      const r = await p.ini!.scsi(cdb, opts);
      if (!isUnitAttention(r)) return r;
      this.events.push(`${p.name}: unit attention ${senseOf(r)}`);
    }
    throw new Error(`path ${p.name}: unit attentions without end`);
  }

  /**
   * Ask the live paths for REPORT TARGET PORT GROUPS until one path's group is active/optimized (or, failing
   * that, active/non-optimized), and make it the active path.
   */
  private async choosePath(): Promise<Path> {
    const deadline = Date.now() + (this.o.noPathTimeoutMs ?? 30_000);
    for (;;) {
      for (const asker of this.paths) {
        if (asker.failed || !asker.ini) continue;
        let states: Map<number, number>;
        try {
          const r = await this.retryUa(asker, rtpgCdb(true), { edtl: 1024, read: true });
          if (r.status !== 0) throw new Error(senseOf(r));
          states = new Map(parseRtpg(r.data, true).groups.map((g) => [g.id, g.state]));
        } catch (e) {
          this.fail(asker, `RTPG: ${(e as Error).message}`);
          continue;
        }
        const live = this.paths.filter((x) => !x.failed && x.ini && x.group !== undefined);
        const pick =
          live.find((x) => states.get(x.group!) === AO) ?? live.find((x) => states.get(x.group!) === ANO);
        const summary = [...states].map(([g, s]) => `${g}:${s}`).join(' ');
        if (pick) {
          if (this.active !== pick)
            this.events.push(`RTPG via ${asker.name} [${summary}]: using ${pick.name}`);
          this.active = pick;
          return pick;
        }
        const note = `RTPG via ${asker.name} [${summary}]: no active path`;
        if (this.events[this.events.length - 1] !== note) this.events.push(note);
        break;
      }
      if (this.paths.every((x) => x.failed)) throw new Error(`every path failed: ${this.events.join('; ')}`);
      if (Date.now() > deadline) throw new Error(`no active path in time: ${this.events.join('; ')}`);
      await sleep(this.o.pollMs ?? 100);
    }
  }
}
