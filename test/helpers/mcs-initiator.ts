/**
 * One iSCSI session of several connections (MC/S) on top of TestInitiator: a leading login (CID 0), then
 * logins with the session's TSIH, its ISID and CIDs 1..N-1. Every connection numbers its requests in the one
 * CmdSN space and ITT space of the session; each keeps its own StatSN (checked by TestInitiator as usual).
 * Commands go on a chosen connection (by CID) or round-robin over the connections still open.
 */
import {
  TestInitiator,
  type LoginOptions,
  type LoginResult,
  type ScsiOptions,
  type ScsiResult,
} from './initiator';

export interface McsOptions extends Omit<LoginOptions, 'tsih' | 'cid' | 'isid'> {
  host?: string;
}

export interface JoinResult extends LoginResult {
  ini: TestInitiator;
}

export class McsSession {
  /** Open connections by CID. */
  readonly conns = new Map<number, TestInitiator>();
  private rr = 0;

  private constructor(
    readonly port: number,
    readonly opts: McsOptions,
    readonly lead: TestInitiator,
    readonly tsih: number,
    readonly isid: Buffer,
    /** The keys the target answered in the leading login (MaxConnections among them). */
    readonly keys: Map<string, string>,
  ) {
    this.conns.set(0, lead);
  }

  /** A session of `n` connections (CIDs 0..n-1); throws unless every login succeeds. */
  static async open(port: number, n: number, opts: McsOptions = {}): Promise<McsSession> {
    const lead = await TestInitiator.connect(port, opts.host);
    const r = await lead.login(opts);
    if (r.status !== 0) {
      lead.close();
      throw new Error(`leading login: status 0x${r.status.toString(16)}`);
    }
    const s = new McsSession(port, opts, lead, r.tsih, r.isid, r.keys);
    for (let cid = 1; cid < n; cid++) {
      const j = await s.join(cid);
      if (j.status !== 0) {
        s.close();
        throw new Error(`login of CID ${cid}: status 0x${j.status.toString(16)}`);
      }
    }
    return s;
  }

  /**
   * A new connection logs in to this session with `cid` (and `tsih`, default the session's). On success it
   * joins the session's connections (replacing one with the same CID); on failure it is closed and only the
   * status is reported.
   */
  async join(
    cid: number,
    o: { tsih?: number; keys?: Array<[string, string]>; sendLeadingOnly?: boolean } = {},
  ): Promise<JoinResult> {
    const ini = await TestInitiator.connect(this.port, this.opts.host);
    ini.shareNumbers(this.lead);
    const r = await ini.login({ ...this.opts, ...o, isid: this.isid, tsih: o.tsih ?? this.tsih, cid });
    if (r.status !== 0) {
      ini.close();
      return { ...r, ini };
    }
    // Its numbers are the session's: ExpCmdSN can be checked against the next CmdSN of the whole session.
    ini.checkCmdSNBound = true;
    // The session-wide values were negotiated by the leading login.
    ini.params = {
      ...this.lead.params,
      ourMaxRecv: ini.params.ourMaxRecv,
      targetMaxRecv: ini.params.targetMaxRecv,
    };
    this.conns.set(cid, ini);
    return { ...r, ini };
  }

  /** The connection of `cid`. */
  conn(cid: number): TestInitiator {
    const c = this.conns.get(cid);
    if (!c) throw new Error(`no connection with CID ${cid}`);
    return c;
  }

  /** The next open connection, round-robin. */
  next(): TestInitiator {
    const open = [...this.conns.values()].filter((c) => !c.closed);
    if (open.length === 0) throw new Error('no connection of the session is open');
    return open[this.rr++ % open.length];
  }

  /** A SCSI command on connection `cid`, or on the next one round-robin. */
  scsi(cdb: Buffer, o: ScsiOptions, cid?: number): Promise<ScsiResult> {
    return (cid === undefined ? this.next() : this.conn(cid)).scsi(cdb, o);
  }

  /** Forget a connection that has been logged out or dropped. */
  forget(cid: number): void {
    this.conns.delete(cid);
  }

  /** Drop every connection; throws the first protocol violation a connection recorded and no caller saw. */
  close(): void {
    let first: unknown = null;
    for (const c of this.conns.values()) {
      try {
        c.close();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }

  /** Resolves once every connection of the session is closed. */
  closed(): Promise<void> {
    return Promise.all([...this.conns.values()].map((c) => c.closedPromise)).then(() => undefined);
  }
}
