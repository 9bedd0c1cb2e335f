/**
 * One iSCSI connection on a worker: reads PDUs, runs the login, then full feature phase; sends PDUs (corked per
 * event-loop turn, with backpressure), and carries out what the handlers decide (dispose). The handlers live
 * beside it: dispatch.ts routes each opcode, command.ts is the data path, nop.ts, text.ts, tmf.ts, logout.ts
 * and snack.ts the other requests.
 */
import type { Socket } from 'node:net';
import { PduParser, PduParseError } from '../pdu/parser';
import type { Pdu } from '../pdu/pdu';
import {
  frame,
  type FrameOptions,
  encodeLoginResponse,
  encodeReject,
  encodeNopIn,
  encodeAsyncMessage,
} from '../pdu/serializer';
import { Opcode, RejectReason, LoginStatus, RESERVED_TAG } from '../pdu/opcodes';
import { crc32c, pduCheck, pduSeal, socketWrite } from '../native';
import { LoginHandler, type LoginOutcome } from '../login/login';
import { log } from '../util/log';
import type { ConnectionHost } from './host';
import { Session } from './session';
import { snAdd } from './serial';
import { CommandEngine } from './command';
import { countLoginRefusal } from './mcs';
import { RecoveryLog } from './recovery';
import { holdForReassignment } from './erl2';
import { STOP_SEND_QUEUE } from './backpressure';
import { Keepalive } from './nop';
import { TextExchange } from './text';
import { dispatchFfp, afterLogout } from './dispatch';
import { type Disposition, fatal, reject } from './disposition';

/** Largest PDU sendAlone() copies into one buffer: an 8 KiB READ with its header, digests and pad. */
const ALONE_COPY_MAX = 8192 + 64;

/**
 * A turn's small answers gathered by copying (Connection.gather): the buffer they are copied into, taken from
 * this thread's free list at the first answer of a turn and given back once written, so that an idle
 * connection holds none.
 */
const GATHER_BYTES = 64 * 1024;
const gatherFree: Buffer[] = [];
const GATHER_FREE_MAX = 16;

export interface ConnectionMeta {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** The socket's descriptor as the worker adopted it (TCP_INFO for `nodetgt show sessions` and `tune`). */
  fd?: number;
  /** Date.now() by which the login must be complete (default: limits.loginTimeout from now). */
  loginDeadline?: number;
}

export class Connection {
  readonly parser: PduParser;
  phase: 'login' | 'ffp' | 'logout' | 'closed' = 'login';
  statSN = 1;
  expStatSN = 0;
  cid = 0;
  session: Session | null = null;
  /**
   * How the connection leaves its session: 'dropped' (failed, or closed without a logout) unless a logout or a
   * connection reinstatement says otherwise ('recovery': Logout reason 2). At ErrorRecoveryLevel 0 a dropped
   * connection ends its session; at 2 any but a logged-out one leaves its tasks for reassignment (erl2.ts).
   */
  departure: 'dropped' | 'logged-out' | 'replaced' | 'recovery' = 'dropped';
  /** How send() frames PDUs: the digests in force, computed a PDU per native call. */
  private readonly frameOpts: FrameOptions = {
    headerDigest: false,
    dataDigest: false,
    crc32c,
    seal: pduSeal,
  };
  /** The digests negotiated at login, in force from the first PDU after the final login response. */
  get headerDigest(): boolean {
    return this.frameOpts.headerDigest;
  }
  get dataDigest(): boolean {
    return this.frameOpts.dataDigest;
  }
  /** Largest data segment we may send (the initiator's MaxRecvDataSegmentLength). */
  maxSendDataSegment = 8192;
  readonly commands: CommandEngine;
  /** What is kept for SNACKs; only at ErrorRecoveryLevel 1 (null at 0: nothing kept, nothing to pay). */
  recovery: RecoveryLog | null = null;
  /** Task management functions delivered on this connection and not yet answered (a Logout Response waits). */
  readonly tmfsInFlight = new Set<Promise<void>>();
  private readonly login: LoginHandler;
  private loginTimer: NodeJS.Timeout | null;
  readonly keepalive: Keepalive;
  readonly text: TextExchange;
  /** Target Transfer Tags of NOP-In pings and long text answers. */
  private nextTtt = 1;
  /**
   * Backpressure: set while the socket holds more than config.sendHighWater unsent bytes. The connection then
   * reads nothing (TCP pushes back), starts no new command and holds the session's CmdSN window, until 'drain'.
   */
  sendBlocked = false;
  /** Why the socket is not being read, as bits (STOP_* in backpressure.ts); 0: reading. */
  readStops = 0;
  private stallTimer: NodeJS.Timeout | null = null;
  private readonly gapTimers = new Set<NodeJS.Timeout>();
  private closedResolve!: () => void;
  readonly closed: Promise<void>;
  readonly peer: string;
  /** Called once, when the connection leaves the login phase (full feature phase, or closed). */
  loginEnded: (() => void) | null = null;

  constructor(
    readonly socket: Socket,
    readonly ctx: ConnectionHost,
    readonly meta: ConnectionMeta,
  ) {
    this.peer = `${meta.remoteAddress}:${meta.remotePort}`;
    this.closed = new Promise((r) => (this.closedResolve = r));
    this.parser = new PduParser({
      onPdu: (p) => this.onPdu(p),
      onError: (e) => this.onParseError(e),
      crc32c,
      pduCheck,
      maxDataSegmentLength: 8192,
      retainChunks: true,
    });
    this.commands = new CommandEngine(this);
    this.login = new LoginHandler(ctx.loginEnvironment(meta.remoteAddress));
    this.keepalive = new Keepalive(this);
    this.text = new TextExchange(this, () => this.login.negotiator!);
    this.loginTimer = setTimeout(
      () => {
        log.warn('login timed out', { peer: this.peer });
        ctx.counters.inc('instSsnCxnTimeoutErrors');
        this.close('login timeout');
      },
      Math.max(0, (meta.loginDeadline ?? Date.now() + ctx.config.limits.loginTimeout * 1000) - Date.now()),
    );
    ctx.counters.inc('cxnActive');
    socket.setNoDelay(true);
    // Reads arrive through receive() (the worker's slab reader), or as 'data' events without one.
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => log.debug('socket error', { peer: this.peer, error: e.message }));
    socket.on('close', () => this.onClose());
  }

  /** Bytes the portal read before the hand-over (not in socket.bytesRead). */
  private fedBytes = 0;

  /** Bytes received on this connection, the portal's first read included. */
  get bytesIn(): number {
    return this.fedBytes + this.socket.bytesRead;
  }

  get bytesOut(): number {
    return this.directBytes + this.socket.bytesWritten;
  }

  /** Bytes the portal read before the hand-over go through the parser first. */
  feed(initial: Buffer): void {
    this.fedBytes += initial.length;
    if (initial.length) this.onData(initial);
  }

  receive(chunk: Buffer): void {
    this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    this.keepalive.lastRx = Date.now();
    if (this.phase === 'closed') return;
    this.parser.push(chunk);
    this.countParser();
  }

  /** The parser's counts taken into the counters so far (countParser). */
  private parsed = { copied: 0, headerDigests: 0, dataDigests: 0 };

  /**
   * Count what the parser did since the last call: bytes it copied, digests it verified. Called for each PDU
   * before it is handled (its answer may go out before push() returns) and after each chunk.
   */
  private countParser(): void {
    const parser = this.parser;
    const seen = this.parsed;
    const c = this.ctx.counters;
    if (parser.copiedBytes !== seen.copied) {
      c.inc('pduDataCopiedBytes', parser.copiedBytes - seen.copied);
      seen.copied = parser.copiedBytes;
    }
    if (parser.headerDigestsVerified !== seen.headerDigests) {
      c.inc('pduHeaderDigestsVerified', parser.headerDigestsVerified - seen.headerDigests);
      seen.headerDigests = parser.headerDigestsVerified;
    }
    if (parser.dataDigestsVerified !== seen.dataDigests) {
      c.inc('pduDataDigestsVerified', parser.dataDigestsVerified - seen.dataDigests);
      seen.dataDigests = parser.dataDigestsVerified;
    }
  }

  /** Who a session event is about, for the logs: peer, and once logged in initiator, ISID, TSIH, CID, target. */
  who(): Record<string, unknown> {
    const s = this.session;
    if (!s) return { peer: this.peer };
    const target = s.target?.name ?? '(discovery)';
    return { peer: this.peer, initiator: s.initiatorName, isid: s.isid, tsih: s.tsih, cid: this.cid, target };
  }

  // ---- sending ---------------------------------------------------------------------------------

  /**
   * Send one PDU (bhs already encoded) with optional data, as one corked batch of writes. At ERL 1 a PDU that
   * consumes a StatSN is kept for a Status SNACK (a Data-In with status is kept with its READ's Data-In);
   * `replay` marks a retransmission, already kept.
   */
  send(
    bhs: Buffer,
    data: Buffer | readonly Buffer[] | null = null,
    onSent?: () => void,
    replay = false,
  ): void {
    if (this.phase === 'closed') {
      onSent?.();
      return;
    }
    if (this.recovery && !replay) this.recovery.sent(bhs, data);
    const iov = frame(bhs, data, this.frameOpts);
    const s = this.socket;
    // A whole answer (no data, or the last Data-In of a READ) while no other command is on the connection,
    // nothing is corked and no more PDUs of the chunk being parsed follow (commands answered at once, as they
    // arrive, would each be a write): no other PDU can join it in this turn, so it goes out alone (sendAlone).
    // Other small whole answers of a turn are copied together and leave in one write(2) at its end (gather):
    // cheaper than the stream's cork and writev, which cost a Writable write and a WriteWrap entry each. The
    // Data-In of a READ that takes several PDUs is not copied (nor what follows it in the turn): it goes out
    // from its own buffers.
    if (!this.corked && (data === null || onSent !== undefined)) {
      const alone = this.gathered === 0 && this.commands.tasks.size <= 1 && !this.parser.pduFollows;
      if (alone && this.sendAlone(iov, onSent)) return this.sent(bhs);
      if (this.gather(iov)) {
        onSent?.();
        return this.sent(bhs);
      }
    }
    // Anything gathered before this PDU goes first.
    this.flushGathered();
    this.corkForTurn();
    // A data digest (with its pad) waiting from the previous PDU of this turn rides in front of this header,
    // and this PDU's waits in turn: one write fewer per data PDU (writes cost more than these 4-7 bytes).
    const tail = this.tail;
    if (tail !== null) {
      iov[0] = Buffer.concat([tail, iov[0]!], tail.length + iov[0]!.length);
      this.tail = null;
    }
    if (this.frameOpts.dataDigest && iov.length > 2 && iov[iov.length - 1]!.length <= 7)
      this.tail = iov.pop()!;
    const last = iov.length - 1;
    for (let i = 0; i < last; i++) s.write(iov[i]);
    // The kernel has the bytes once the last write completes (writes complete in order): only then may a
    // pooled data buffer be reused.
    if (onSent) s.write(iov[last], onSent);
    else s.write(iov[last]);
    this.sent(bhs);
  }

  private sent(bhs: Buffer): void {
    const s = this.socket;
    if (!this.sendBlocked && s.writableLength > this.ctx.config.sendHighWater) this.blockSending();
    const c = this.ctx.counters;
    c.inc('ssnRspPDUs');
    c.inc('ssnTxDataOctets', (bhs[5] << 16) | (bhs[6] << 8) | bhs[7]);
    this.session?.stats?.tx((bhs[5] << 16) | (bhs[6] << 8) | bhs[7]);
  }

  /** sendAlone()'s copy buffer; dropped whenever the socket still holds it after a write. */
  private scratch: Buffer | null = null;
  /** Bytes writeDirect() put on the socket itself (not in socket.bytesWritten). */
  private directBytes = 0;

  /**
   * One write for one PDU, without the cork: the QD1 path. Corking costs a setImmediate and the stream's
   * writev machinery (about 10 µs of CPU per answer on the 2-core bench box, bench/qd1.ts and a loopback
   * ping-pong), more than copying a small PDU (a 4 KiB READ's header and data) into one buffer; the caller's
   * buffers are then free at once, so onSent runs now. False when the PDU is several buffers too big to copy
   * (the caller corks then, as for any batch).
   */
  private sendAlone(iov: Buffer[], onSent?: () => void): boolean {
    if (iov.length === 1) {
      this.writeDirect(iov[0]!, onSent);
      return true;
    }
    const total = iovBytes(iov);
    if (total > ALONE_COPY_MAX) return false;
    this.scratch ??= Buffer.allocUnsafe(ALONE_COPY_MAX);
    const one = this.scratch.subarray(0, total);
    copyIov(iov, one, 0);
    // Written through at once (the usual case on a socket with room): the scratch is free for the next one.
    if (!this.writeDirect(one)) this.scratch = null;
    onSent?.();
    return true;
  }

  /**
   * Write `buf` with one write(2) on the socket's descriptor while the stream holds nothing (so nothing can be
   * overtaken): the stream's write costs about 3 µs of CPU per answer around the syscall (Writable, WriteBuffer;
   * perf, bench/qd1.ts --kinds null), native/sockwrite.cc a fraction of that. What the kernel does not take (a
   * full socket buffer: EAGAIN, a partial write) or an error (EPIPE, ECONNRESET) goes to the stream, which queues
   * it or meets the error and reports it as for any write. True when nothing holds `buf` any more.
   */
  private writeDirect(buf: Buffer, onSent?: () => void): boolean {
    const s = this.socket;
    const fd = this.meta.fd;
    let rest = buf;
    if (fd !== undefined && s.writableLength === 0 && s.writableCorked === 0 && s.writable) {
      const n = socketWrite(fd, buf);
      if (n === buf.length) {
        this.directBytes += n;
        onSent?.();
        return true;
      }
      if (n > 0) {
        this.directBytes += n;
        rest = buf.subarray(n);
      }
    }
    if (onSent) s.write(rest, onSent);
    else s.write(rest);
    return s.writableLength === 0;
  }

  /** The turn's gather buffer (see GATHER_BYTES) and how much of it is filled. */
  private gatherBuf: Buffer | null = null;
  private gathered = 0;

  /**
   * Copy a small PDU into the turn's gather buffer; the end of the turn (or a PDU that is not gathered, or
   * the buffer filling up) writes the lot with writeDirect(). False when the PDU is too big to copy.
   */
  private gather(iov: Buffer[]): boolean {
    const total = iovBytes(iov);
    if (total > ALONE_COPY_MAX) return false;
    if (this.gathered + total > GATHER_BYTES) this.flushGathered();
    if (this.gatherBuf === null) {
      this.gatherBuf = gatherFree.pop() ?? Buffer.allocUnsafeSlow(GATHER_BYTES);
      setImmediate(this.flushGathered);
    }
    this.gathered = copyIov(iov, this.gatherBuf, this.gathered);
    return true;
  }

  /** Write what gather() holds; its buffer goes back to the free list unless the stream still holds a part. */
  private readonly flushGathered = (): void => {
    // gather() fills the buffer as it takes it: one that is there holds a PDU at least.
    const buf = this.gatherBuf;
    if (buf === null) return;
    const n = this.gathered;
    this.gatherBuf = null;
    this.gathered = 0;
    if (this.socket.destroyed) return;
    if (this.writeDirect(buf.subarray(0, n)) && gatherFree.length < GATHER_FREE_MAX) gatherFree.push(buf);
  };

  private corked = false;
  /** The last data PDU's digest (and pad), not written yet: the next send() or the end of the turn writes it. */
  private tail: Buffer | null = null;
  private readonly uncork = () => {
    this.corked = false;
    this.flushTail();
    this.socket.uncork();
  };

  /** Write what the turn holds back (gathered PDUs, a data digest) now: before anything ends the socket. */
  flushHeld(): void {
    this.flushGathered();
    this.flushTail();
  }

  /** Write a held data digest now: before the turn ends, and before anything ends the socket. */
  private flushTail(): void {
    const tail = this.tail;
    if (tail === null) return;
    this.tail = null;
    if (!this.socket.writableEnded) this.socket.write(tail);
  }

  /**
   * Everything sent during one event-loop turn (e.g. the responses to a batch of io_uring completions) that
   * gather() does not take leaves in one writev: the socket is corked at the first such send and uncorked once
   * the turn's callbacks are done.
   */
  private corkForTurn(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(this.uncork);
  }

  private blockSending(): void {
    const s = this.socket;
    this.sendBlocked = true;
    this.stopReading(STOP_SEND_QUEUE);
    this.session?.holdWindow();
    s.once('drain', this.unblockSending);
    log.debug('send queue past its high-water mark: not reading', {
      peer: this.peer,
      queued: s.writableLength,
    });
    // Bytes whose writes completed (bytesWritten also counts the ones still queued).
    const sent = () => s.bytesWritten - s.writableLength;
    const timeout = this.ctx.config.sendTimeout * 1000;
    let last = sent();
    let lastProgress = Date.now();
    this.stallTimer = setInterval(
      () => {
        const now = Date.now();
        const n = sent();
        if (n !== last) {
          last = n;
          lastProgress = now;
        } else if (now - lastProgress >= timeout) {
          this.ctx.counters.inc('instSsnCxnTimeoutErrors');
          this.session?.stats?.timeoutError();
          log.warn('no send progress: dropping the connection', {
            peer: this.peer,
            queued: s.writableLength,
          });
          this.close('send stalled');
        }
      },
      Math.min(1000, Math.max(50, timeout / 4)),
    );
    this.stallTimer.unref();
  }

  private readonly unblockSending = (): void => {
    if (!this.sendBlocked) return;
    this.sendBlocked = false;
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    if (this.phase === 'closed') return;
    this.startReading(STOP_SEND_QUEUE);
    const session = this.session;
    const moved = session?.releaseWindow() ?? false;
    this.commands.resumeDeferred();
    // The responses sent while the window was held carried the old MaxCmdSN: tell the initiator it moved.
    if (moved && session && this.phase === 'ffp' && !this.sendBlocked)
      this.send(
        encodeNopIn({
          itt: RESERVED_TAG,
          ttt: RESERVED_TAG,
          statSN: this.statSN,
          expCmdSN: session.expCmdSN,
          maxCmdSN: session.maxCmdSN,
        }),
      );
  };

  /** Stop reading the socket for `reason` (TCP then pushes back on the initiator). */
  stopReading(reason: number): void {
    if (this.readStops === 0) this.socket.pause();
    this.readStops |= reason;
  }

  /** `reason` is gone: read again once no other reason holds. */
  startReading(reason: number): void {
    if ((this.readStops & reason) === 0) return;
    this.readStops &= ~reason;
    if (this.readStops === 0 && this.phase !== 'closed') this.socket.resume();
  }

  /** True while the target itself does not read the socket (a partial PDU or a NOP-Out answer may wait in it). */
  get readingStopped(): boolean {
    return this.readStops !== 0;
  }

  /**
   * An iSCSI event for the initiator (Async Message, RFC 7143 11.9; AsyncEvent and its parameters there).
   * It takes a StatSN like any status. False, and nothing sent, outside full feature phase.
   */
  sendAsyncEvent(
    asyncEvent: number,
    p: { parameter1?: number; parameter2?: number; parameter3?: number },
  ): boolean {
    const session = this.session;
    if (this.phase !== 'ffp' || !session) return false;
    this.send(
      encodeAsyncMessage({
        asyncEvent,
        ...p,
        statSN: this.nextStatSN(),
        expCmdSN: session.expCmdSN,
        maxCmdSN: session.maxCmdSN,
      }),
    );
    return true;
  }

  /** A Target Transfer Tag for a NOP-In ping or a long text answer. */
  nextTargetTag(): number {
    return this.nextTtt++ & 0x7fffffff;
  }

  /** StatSN for a PDU that carries status: assigned, then advanced. */
  nextStatSN(): number {
    const s = this.statSN;
    this.statSN = snAdd(this.statSN, 1);
    return s;
  }

  get expCmdSN(): number {
    return this.session ? this.session.expCmdSN : 0;
  }
  get maxCmdSN(): number {
    return this.session ? this.session.maxCmdSN : 0;
  }

  /**
   * The one place where what a handler decided about a PDU (`bhs`, its header) is carried out: the Reject sent
   * with the offending header, the error counted and logged, the connection closed on a fatal error.
   */
  dispose(bhs: Buffer, d: Disposition): void {
    if (d.kind === 'ok') return;
    if (d.formatError) this.ctx.counters.inc('instSsnFormatErrors');
    const fields = { ...this.who(), opcode: `0x${(bhs[0] & 0x3f).toString(16)}`, ...d.detail };
    if (d.level === 'warn') log.warn(d.why, fields);
    else log.debug(d.why, fields);
    if (d.kind === 'reject') this.sendReject(d.reason, bhs, d.dataSN);
    else if (d.kind === 'fatal') {
      if (d.reject === undefined) return this.close(d.why);
      this.sendReject(d.reject, bhs);
      // Error recovery level 0: the connection ends once the Reject is on its way.
      setImmediate(() => this.close(d.why));
    }
  }

  /** `dataSN`: for a Data/R2T SNACK rejected as a protocol error, the next DataSN/R2TSN (RFC 7143 11.17.3). */
  private sendReject(reason: number, bhs: Buffer, dataSN = 0): void {
    this.ctx.counters.inc('rejectsSent');
    this.send(
      encodeReject({
        reason,
        statSN: this.nextStatSN(),
        expCmdSN: this.expCmdSN,
        maxCmdSN: this.maxCmdSN,
        dataSN,
      }),
      Buffer.from(bhs),
    );
    this.watchGap(bhs);
  }

  /**
   * RFC 7143 sec. 6.3: a rejected non-immediate command leaves its CmdSN as a gap that the initiator must plug
   * (resend the command or abort it). Commands behind the gap wait for it, so a gap still open after
   * rejectGapTimeout ends the connection rather than leaving them unanswered forever.
   */
  private watchGap(bhs: Buffer): void {
    const session = this.session;
    if (!session || this.phase !== 'ffp' || (bhs[0] & 0x40) !== 0) return;
    const op = bhs[0] & 0x3f;
    const carriesCmdSN =
      op === Opcode.ScsiCommand ||
      op === Opcode.TaskMgmtRequest ||
      op === Opcode.TextRequest ||
      op === Opcode.LogoutRequest ||
      (op === Opcode.NopOut && bhs.readUInt32BE(16) !== RESERVED_TAG);
    if (!carriesCmdSN) return;
    const cmdSN = bhs.readUInt32BE(24);
    if (!session.isGap(cmdSN)) return;
    const timer = setTimeout(() => {
      this.gapTimers.delete(timer);
      if (this.phase === 'closed' || session.passed(cmdSN)) return;
      this.ctx.counters.inc('instSsnFormatErrors');
      log.warn('CmdSN gap of a rejected command not filled: dropping the connection', {
        peer: this.peer,
        cmdSN,
      });
      this.close('CmdSN gap not filled');
    }, this.ctx.config.rejectGapTimeout * 1000);
    timer.unref();
    this.gapTimers.add(timer);
  }

  // ---- receiving ---------------------------------------------------------------------------------

  private onParseError(e: PduParseError): void {
    if (e.kind === 'data-too-long') {
      const why = 'data segment longer than MaxRecvDataSegmentLength';
      const detail = { detail: e.message };
      this.dispose(
        e.bhs,
        this.phase === 'login' ? fatal(why, { detail }) : reject(RejectReason.ProtocolError, why, { detail }),
      );
      return;
    }
    this.ctx.counters.inc('instSsnDigestErrors');
    this.session?.stats?.digestError();
    if (e.kind === 'data-digest' && this.phase === 'ffp') {
      this.dispose(
        e.bhs,
        reject(RejectReason.DataDigestError, 'data digest error', { formatError: false, level: 'warn' }),
      );
      // RFC 7143 sec. 7.8: the data PDU is discarded. At ERL 0 its task ends with CHECK CONDITION once the
      // rest of its data has arrived; at ERL 1 a recovery R2T asks for it again. A SCSI Command with bad
      // immediate data is discarded whole at either level (the Reject tells the initiator to retry it).
      if (e.pdu && e.pdu.opcode === Opcode.DataOut) this.dispose(e.bhs, this.commands.onDataOut(e.pdu, true));
      return;
    }
    // A header that fails its digest cannot be trusted for its lengths, and without markers (RFC 7143 has
    // none) the next PDU boundary cannot be found: the connection goes, at ERL 1 too (RFC 7143 sec. 7.8).
    this.dispose(e.bhs, fatal('header digest error: dropping the connection', { formatError: false }));
  }

  private onPdu(pdu: Pdu): void {
    if (this.phase === 'closed') return;
    this.countParser();
    // Only SCSI Command and Data-Out PDUs pin their receive slab (CommandEngine retains what it keeps); any
    // other PDU may be kept by a handler (waiting for its CmdSN, a login continued): it gets memory of its own.
    if (pdu.opcode !== Opcode.ScsiCommand && pdu.opcode !== Opcode.DataOut) pdu = detach(pdu);
    this.ctx.counters.inc('ssnCmdPDUs');
    this.ctx.counters.inc('ssnRxDataOctets', pdu.dataLength);
    this.session?.stats?.rx(pdu.dataLength);
    try {
      if (this.phase === 'login') this.onLoginPdu(pdu);
      else if (this.phase === 'logout') this.dispose(pdu.bhs, afterLogout(pdu));
      else this.dispose(pdu.bhs, dispatchFfp(this, pdu));
    } catch (e) {
      // A bug or a malformed field we did not anticipate: this connection goes, the worker stays.
      this.ctx.counters.inc('instSsnFormatErrors');
      log.error('error handling PDU', {
        peer: this.peer,
        opcode: pdu.opcode,
        error: (e as Error).stack ?? String(e),
      });
      this.close('internal error');
    }
  }

  private onLoginPdu(pdu: Pdu): void {
    if (pdu.opcode !== Opcode.LoginRequest) {
      // RFC 7143 sec. 6.3: anything but a Login Request during login is a protocol error.
      this.ctx.counters.inc('tgtLoginOtherFails');
      log.warn('non-login PDU during login', { peer: this.peer, opcode: pdu.opcode });
      this.loginReply(
        pdu,
        LoginStatus.InvalidDuringLogin,
        { transit: false, continue: false, csg: 0, nsg: 0 },
        Buffer.alloc(0),
      );
      this.close('protocol error in login');
      return;
    }
    const reply = this.login.handle(pdu);
    if (reply.status !== 0) {
      this.refuseLogin(reply.status, this.login.lastFailure?.message ?? '');
      this.loginReply(pdu, reply.status, reply, reply.data);
      this.close('login failed');
      return;
    }
    let tsih = pdu.bhs.readUInt16BE(14);
    if (reply.outcome) {
      const result = this.ctx.completeLogin(this, reply.outcome);
      if (typeof result === 'number') {
        this.refuseLogin(result, this.ctx.lastRefusal);
        this.loginReply(
          pdu,
          result,
          { transit: false, continue: false, csg: reply.csg, nsg: 0 },
          Buffer.alloc(0),
        );
        this.close('login failed');
        return;
      }
      tsih = result.tsih;
      this.enterFullFeature(reply.outcome, result);
    }
    this.loginReply(pdu, 0, reply, reply.data, tsih);
    if (reply.outcome) {
      // Digests apply from the first PDU after the final login response.
      this.parser.headerDigest = this.frameOpts.headerDigest = reply.outcome.params.headerDigest;
      this.parser.dataDigest = this.frameOpts.dataDigest = reply.outcome.params.dataDigest;
    }
  }

  /** A login refused: logged with its status and reason, and counted. */
  private refuseLogin(status: number, reason: string): void {
    log.warn('login rejected', {
      peer: this.peer,
      initiator: this.login.initiator || '(not given)',
      status: `0x${status.toString(16).padStart(4, '0')}`,
      reason,
    });
    this.countLoginFailure(status);
  }

  private countLoginFailure(status: number): void {
    const c = this.ctx.counters;
    countLoginRefusal(c, status);
    if (status === LoginStatus.AuthenticationFailure) {
      c.inc('tgtLoginAuthenticateFails');
      this.ctx.onAuthFailure(this.meta.remoteAddress);
    } else if (status === LoginStatus.AuthorizationFailure) c.inc('tgtLoginAuthorizeFails');
    else if (status === LoginStatus.InitiatorError || status === LoginStatus.MissingParameter)
      c.inc('tgtLoginNegotiateFails');
    else c.inc('tgtLoginOtherFails');
  }

  private loginReply(
    pdu: Pdu,
    status: number,
    f: { transit: boolean; continue: boolean; csg: number; nsg: number },
    data: Buffer,
    tsih = pdu.bhs.readUInt16BE(14),
  ): void {
    const cmdSN = pdu.bhs.readUInt32BE(24);
    this.expStatSN = pdu.bhs.readUInt32BE(28);
    const failed = status !== 0;
    this.send(
      encodeLoginResponse({
        transit: failed ? false : f.transit,
        continue: failed ? false : f.continue,
        csg: f.csg,
        nsg: failed ? 0 : f.nsg,
        isid: pdu.bhs.subarray(8, 14),
        tsih: failed ? 0 : tsih,
        itt: pdu.itt,
        statSN: this.nextStatSN(),
        expCmdSN: this.session ? this.session.expCmdSN : cmdSN,
        maxCmdSN: this.session ? this.session.maxCmdSN : cmdSN,
        statusClass: status >> 8,
        statusDetail: status & 0xff,
      }),
      data.length ? data : null,
    );
  }

  private enterFullFeature(outcome: LoginOutcome, session: Session): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.endLogin();
    this.session = session;
    this.cid = outcome.cid;
    this.phase = 'ffp';
    const p = outcome.params;
    this.maxSendDataSegment = p.initiatorMaxRecvDataSegmentLength;
    this.parser.maxDataSegmentLength = p.targetMaxRecvDataSegmentLength;
    if (p.errorRecoveryLevel >= 1) this.recovery = new RecoveryLog();
    this.ctx.counters.inc('tgtLoginAccepts');
    log.info('login', {
      peer: this.peer,
      initiator: outcome.initiatorName,
      isid: session.isid,
      target: outcome.targetName ?? '(discovery)',
      tsih: session.tsih,
      cid: outcome.cid,
      digests: `${p.headerDigest ? 'H' : '-'}${p.dataDigest ? 'D' : '-'}`,
    });
    this.keepalive.arm();
  }

  // ---- teardown --------------------------------------------------------------------------------

  close(reason: string): void {
    if (this.phase === 'closed') return;
    log.debug('closing connection', { ...this.who(), reason });
    this.phase = 'closed';
    // Whatever this turn queued (a login reject, a Reject PDU) goes out before the descriptor closes.
    this.flushGathered();
    if (this.corked) this.uncork();
    this.socket.destroy();
    this.onClose();
  }

  private endLogin(): void {
    const f = this.loginEnded;
    this.loginEnded = null;
    f?.();
  }

  private finished = false;
  private onClose(): void {
    if (this.finished) return;
    this.finished = true;
    this.phase = 'closed';
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.endLogin();
    this.keepalive.stop();
    if (this.stallTimer) clearInterval(this.stallTimer);
    for (const t of this.gapTimers) clearTimeout(t);
    this.gapTimers.clear();
    if (this.sendBlocked) {
      this.sendBlocked = false;
      this.session?.releaseWindow();
    }
    this.ctx.backpressure.forget(this);
    if (!holdForReassignment(this)) this.commands.abortAll();
    this.commands.releaseDataWaits();
    this.ctx.counters.inc('cxnActive', -1);
    this.ctx.connectionClosed(this);
    this.closedResolve();
  }
}

/** A PDU in memory of its own (not a view of a receive slab). */
/** Bytes in a PDU's buffers. */
function iovBytes(iov: readonly Buffer[]): number {
  let total = 0;
  for (let i = 0; i < iov.length; i++) total += iov[i].length;
  return total;
}

/** Copy a PDU's buffers into `to` from `at`; returns where they end. */
function copyIov(iov: readonly Buffer[], to: Buffer, at: number): number {
  for (let i = 0; i < iov.length; i++) at += iov[i].copy(to, at);
  return at;
}

function detach(pdu: Pdu): Pdu {
  return {
    ...pdu,
    bhs: Buffer.from(pdu.bhs),
    ahs: pdu.ahs && Buffer.from(pdu.ahs),
    data: pdu.data.length ? Buffer.from(pdu.data) : pdu.data,
  };
}
