/**
 * Everything a worker thread shares between its connections: targets, sessions, TSIH allocation, counters.
 * It also makes the login's final decision (new session, added connection, reinstatement).
 */
import { BroadcastChannel } from 'node:worker_threads';
import type { Config } from '../config/schema';
import type { CounterRow } from '../metrics/counters';
import { claimSessionStats } from '../metrics/session-stats';
import { TsihTable } from './routing';
import { LoginStatus } from '../pdu/opcodes';
import type { TargetOffer } from '../login/negotiator';
import { offerFor } from '../config/params';
import type { LoginEnvironment, LoginOutcome } from '../login/login';
import { ChapAuthenticator } from '../login/chap';
import { Session, SessionTable } from '../session/session';
import type { Connection } from '../session/connection';
import type { ConnectionHost, SessionTarget } from '../session/host';
import { hasRoom, joinable, joinRefusal, replaceConnection, sessionEndsWith } from '../session/mcs';
import { abandonPending } from '../session/erl2';
import { TargetRegistry, type TargetNode } from './targets';
import { SessionLimits } from './session-limits';
import { viewChange } from '../scsi/lun-view';
import { UA } from '../scsi/lu-shared';
import { log } from '../util/log';
import { SlabPool } from '../util/slab-pool';
import { BackstoreQueue } from '../session/backpressure';

/** Every worker listens here: a TARGET COLD RESET ends the target's sessions on all of them. */
const COLD_RESET_CHANNEL = 'nodetgt:target-cold-reset';

export class WorkerContext implements ConnectionHost {
  readonly sessions = new SessionTable();
  /** The global `params`: discovery sessions negotiate with it. */
  readonly offer: TargetOffer;
  /** Each target's own offer (its `params` over the global ones), made once. */
  private readonly offers = new WeakMap<TargetNode, TargetOffer>();
  private readonly limits: SessionLimits;
  /** Sessions and connections counted in `limits`, released exactly once when they end. */
  private readonly countedSessions = new WeakSet<Session>();
  private readonly countedConnections = new WeakSet<Connection>();
  private readonly coldResets = new BroadcastChannel(COLD_RESET_CHANNEL);
  readonly slabs: SlabPool;
  readonly backpressure: BackstoreQueue;
  /** Told the source address of every login that failed authentication (the portal rate-limits it). */
  onAuthFailure: (address: string) => void = () => undefined;

  constructor(
    public config: Config,
    readonly targets: TargetRegistry,
    readonly tsihs: TsihTable,
    readonly counters: CounterRow,
    readonly threadId: number,
    sessionLimits?: SharedArrayBuffer,
  ) {
    this.offer = offerFor(config.params);
    this.slabs = new SlabPool(config.readPoolBytes, (allocated, pooled) => {
      counters.inc('readSlabBytes', allocated);
      counters.inc('readSlabPooledBytes', pooled);
    });
    this.backpressure = new BackstoreQueue(config.backstoreHighWater);
    this.limits = new SessionLimits(config, sessionLimits);
    this.coldResets.onmessage = (ev) => this.endTargetSessions((ev as MessageEvent).data as string);
    this.coldResets.unref();
  }

  /**
   * TARGET COLD RESET (RFC 7143 11.5.1): every connection of every session to the target closes, on every
   * worker. Called once the TMF Response has been queued, so the initiator that asked may still read it.
   */
  coldReset(targetName: string): void {
    log.info('target cold reset: closing every session of the target', { target: targetName });
    this.coldResets.postMessage(targetName);
    this.endTargetSessions(targetName);
  }

  /** End every session of the target on this worker (cold reset, target removed live); returns how many. */
  endTargetSessions(targetName: string): number {
    let n = 0;
    for (const s of this.sessions.all())
      if (s.target?.name === targetName && !s.ended) {
        this.endSession(s);
        n++;
      }
    return n;
  }

  loginEnvironment(remoteAddress: string): LoginEnvironment {
    return {
      portalGroupTag: this.config.portalGroupTag,
      offer: this.offer,
      // A new authenticator per connection: it holds this login's challenge.
      authenticator: new ChapAuthenticator((ctx) =>
        ctx.sessionType === 'Discovery'
          ? this.config.discoveryAuth
          : this.targets.get(ctx.targetName ?? '')?.config.auth,
      ),
      lookupTarget: (name, initiatorName) => {
        const t = this.targets.get(name);
        if (!t) return 'not-found';
        if (!t.allows(initiatorName, remoteAddress)) return 'forbidden';
        return { name: t.name, alias: t.config.alias, offer: this.targetOffer(t) };
      },
      sessionExists: (tsih, initiatorName, isid, targetName) => {
        const s = this.sessions.get(tsih);
        return (
          joinable(s) &&
          s.initiatorName === initiatorName &&
          s.isid === isid &&
          (s.target?.name ?? null) === targetName
        );
      },
      sessionParams: (tsih) => this.sessions.get(tsih)?.params,
      sessionHasRoom: (tsih, cid) => {
        const s = this.sessions.get(tsih);
        return !!s && hasRoom(s, cid);
      },
    };
  }

  private targetOffer(t: TargetNode): TargetOffer {
    let offer = this.offers.get(t);
    if (offer === undefined) this.offers.set(t, (offer = offerFor(t.config.params)));
    return offer;
  }

  /** A login over a session or connection limit: logged, counted, answered Out of Resources (RFC 7143 11.13.5). */
  private overLimit(o: LoginOutcome, reason: string): number {
    this.lastRefusal = reason;
    this.counters.inc('tgtLoginLimitRefusals');
    log.warn('login refused: limit reached', { initiator: o.initiatorName, target: o.targetName, reason });
    return LoginStatus.OutOfResources;
  }

  /** The connection counts against its target's maxConnections, or the login is refused. */
  private admitConnection(conn: Connection, target: SessionTarget | null, o: LoginOutcome): number | null {
    if (!target) return null;
    const why = this.limits.takeConnection(target.config);
    if (why !== null) return this.overLimit(o, why);
    this.countedConnections.add(conn);
    return null;
  }

  /** Why completeLogin last refused a login (for its log line). */
  lastRefusal = '';

  /** The last step of a successful login: the session this connection belongs to, or a login status. */
  completeLogin(conn: Connection, o: LoginOutcome): Session | number {
    if (!o.leading) {
      const s = this.sessions.get(o.tsih);
      const why = joinRefusal(s, o);
      if (why !== null) {
        this.lastRefusal = why.reason;
        return why.status;
      }
      const session = s!;
      // Same CID: the new connection takes the old one's place (connection reinstatement). The old one goes
      // first, so that its place under the target's maxConnections is free for its successor.
      const old = session.connections.get(o.cid);
      if (old) replaceConnection(old, this.counters);
      const refused = this.admitConnection(conn, session.target, o);
      if (refused !== null) {
        if (session.connections.size === 0) this.endSession(session);
        return refused;
      }
      session.connections.set(o.cid, conn);
      session.stats?.setConnections(session.connections.size);
      return session;
    }
    // Session reinstatement: a leading login with the ISID of an existing session ends the old one.
    const old = this.sessions.find(o.initiatorName, o.isid, o.targetName);
    // RFC 7143 6.3.5: the old session's tasks are terminated; their backstore I/O may still be in flight.
    let oldDrained: Promise<void> | null = null;
    if (old) {
      log.info('session reinstatement', { initiator: o.initiatorName, isid: o.isid, oldTsih: old.tsih });
      this.endSession(old);
      oldDrained = old.quiesce();
    }
    const target = o.targetName ? (this.targets.get(o.targetName) ?? null) : null;
    if (target) {
      const why = this.limits.takeSession(target.config);
      if (why !== null) return this.overLimit(o, why);
      const refused = this.admitConnection(conn, target, o);
      if (refused !== null) {
        this.limits.releaseSession(target.config);
        return refused;
      }
    }
    const tsih = this.tsihs.allocate(this.threadId);
    if (tsih === 0) {
      this.lastRefusal = 'no TSIH left';
      if (target) {
        this.limits.releaseSession(target.config);
        this.releaseConnection(conn, target);
      }
      return LoginStatus.OutOfResources;
    }
    const s = new Session(
      tsih,
      o.initiatorName,
      o.isid,
      o.sessionType,
      target,
      target?.scsi ?? null,
      o.params,
      o.cmdSN,
      this.config.queueDepth,
    );
    s.luns = target?.viewFor(o.initiatorName);
    // No command of the new session runs until the old one's have all ended: an old write never lands last.
    if (oldDrained) s.holdCommandsUntil(oldDrained);
    if (target) this.countedSessions.add(s);
    s.connections.set(o.cid, conn);
    this.sessions.add(s);
    this.counters.inc('ssnActive');
    if (target) {
      s.stats = claimSessionStats(
        this.counters.shared.sessions,
        { target: target.name, initiator: o.initiatorName, isid: o.isid },
        target.config.slot,
      );
      s.stats?.setConnections(1);
    }
    // The new I_T nexus is known to every LU of the target at once, so unit attentions reach it whether or
    // not it has addressed the LU yet.
    const d = s.dispatcher;
    if (d) for (const n of d.lunNumbers()) d.getLun(n)?.noteNexus(s.nexus);
    return s;
  }

  endSession(s: Session): void {
    if (s.ended) return;
    s.ended = true;
    s.clearWaiting();
    for (const c of [...s.connections.values()]) c.close('session ended');
    abandonPending(s);
    this.sessions.remove(s);
    this.tsihs.release(s.tsih);
    if (s.target && this.countedSessions.delete(s)) this.limits.releaseSession(s.target.config);
    s.nexusLost();
    this.counters.inc('ssnActive', -1);
    s.stats?.release();
  }

  /**
   * After a live change of host mappings: every session of a changed target takes its new view of the LUNs.
   * A nexus whose LUN inventory changed gets REPORTED LUNS DATA HAS CHANGED on each LU it now sees; one whose
   * read-only state of a LU flipped gets MODE PARAMETERS CHANGED there (the WP bit it reads changed).
   */
  refreshLunViews(targetNames: readonly string[]): void {
    for (const s of this.sessions.all()) {
      if (!s.target || !s.luns || !targetNames.includes(s.target.name)) continue;
      const next = s.target.viewFor(s.initiatorName);
      const before = s.luns;
      const change = viewChange(before, next);
      s.luns = next;
      // On the LUs the nexus saw before as well: a LUN new to it answers at once, as a LUN added live does
      // (src/portal/apply.ts raises the same condition on a target's LUNs once every worker has a change).
      if (change.inventory)
        for (const [n, a] of next.entries())
          if (before.get(n)?.lu === a.lu)
            a.lu.shared.establish(UA.REPORTED_LUNS_DATA_CHANGED, { only: [s.nexus] });
      for (const lu of change.writeProtectFlipped)
        lu.shared.establish(UA.MODE_PARAMETERS_CHANGED, { only: [s.nexus] });
    }
  }

  private releaseConnection(conn: Connection, target: SessionTarget | null): void {
    if (target && this.countedConnections.delete(conn)) this.limits.releaseConnection(target.config);
  }

  connectionClosed(conn: Connection): void {
    const s = conn.session;
    if (!s) return;
    this.releaseConnection(conn, s.target);
    if (s.connections.get(conn.cid) === conn) s.connections.delete(conn.cid);
    s.stats?.setConnections(s.connections.size);
    if (!s.ended && sessionEndsWith(s, conn, this.counters)) this.endSession(s);
  }

  /** SendTargets=All|<name>: the targets this initiator may see, each with the portals it can reach. */
  sendTargets(value: string, session: Session, conn: Connection): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    const tpgt = this.config.portalGroupTag;
    const addrs = this.portalAddresses(conn);
    for (const t of this.targets.all()) {
      if (!t.allows(session.initiatorName, conn.meta.remoteAddress)) continue;
      if (value === 'All') {
        if (session.type !== 'Discovery') continue;
      } else if (value !== '' && value.toLowerCase() !== t.name) continue;
      else if (value === '' && session.target?.name !== t.name) continue;
      out.push(['TargetName', t.name]);
      for (const a of addrs) out.push(['TargetAddress', `${a},${tpgt}`]);
    }
    return out;
  }

  private portalAddresses(conn: Connection): string[] {
    const fmt = (host: string, port: number) =>
      host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const local = conn.meta.localAddress.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
    const out: string[] = [];
    for (const p of this.config.portals) {
      const wildcard = p.host === '0.0.0.0' || p.host === '::';
      const host = wildcard ? local : p.host;
      if (p.port !== conn.meta.localPort && wildcard) continue;
      const s = fmt(host, p.port);
      if (!out.includes(s)) out.push(s);
    }
    if (out.length === 0) out.push(fmt(local, conn.meta.localPort));
    return out;
  }
}
