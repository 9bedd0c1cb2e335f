/**
 * A small iSCSI initiator for tests: what no real tool covers (bad input, protocol corner cases, task
 * management, MC/S). Built on our own PDU codec (its byte-level correctness is tested separately).
 *
 * It checks what the target sends (RFC 7143) and fails loudly on anything unexpected:
 * - replies are matched to outstanding exchanges by ITT; a reply for an ITT that names no outstanding exchange
 *   (never used, already answered, timed out, aborted by a TMF), or of the wrong kind, is a violation;
 * - per SCSI task: Data-In DataSN runs 0,1,2,... without gaps, buffer offsets are contiguous and within EDTL,
 *   no Data-In sequence exceeds MaxBurstLength, nothing follows the status; R2TSN runs 0,1,2,..., each R2T asks
 *   for the next bytes not yet sent, within EDTL and MaxBurstLength, never more than MaxOutstandingR2T
 *   unanswered; the response's ExpDataSN counts the Data-In and R2T PDUs; residuals add up;
 * - StatSN increases by one per status-bearing PDU; R2T and NOP-In pings carry the next one without advancing it;
 * - ExpCmdSN/MaxCmdSN: MaxCmdSN >= ExpCmdSN - 1, neither goes back, ExpCmdSN never passes the CmdSNs sent, and
 *   the answer to a non-immediate request comes with an ExpCmdSN past its CmdSN.
 * A violation rejects every pending promise with a ProtocolViolation and stays recorded: every later call
 * rejects with it too, and close() throws it if no caller has seen it yet. Input after a violation is ignored.
 *
 * Unsolicited PDUs (NOP-In pings with ITT 0xffffffff, Async Messages, Rejects) go to their own queue, read
 * with next(). During login, next() returns every PDU (for tests that log in by hand). Async Messages are also
 * recorded, decoded, in asyncMessages (asyncEvent() waits for one).
 *
 * Several exchanges may be outstanding at once: start() issues a SCSI command and returns its task, whose
 * `done` settles when its status arrives (or rejects with TaskAbortedError once a TMF has ended it).
 * With `holdData` the task keeps its R2Ts for the test to answer (or not) with answer().
 */
import * as net from 'node:net';
import { PduParser, type PduParseError } from '../../src/pdu/parser';
import {
  type Pdu,
  type R2T,
  type AsyncMessage,
  decodeAsyncMessage,
  decodeLoginResponse,
  decodeDataIn,
  decodeR2T,
  decodeScsiResponse,
  decodeTaskMgmtResponse,
  decodeReject,
  bhsConsumedStatSN,
} from '../../src/pdu/pdu';
import {
  frame,
  encodeLoginRequest,
  encodeScsiCommand,
  encodeLogoutRequest,
  encodeTextRequest,
  encodeNopOut,
  encodeDataOut,
  encodeTaskMgmtRequest,
} from '../../src/pdu/serializer';
import { Opcode, opcodeName, RESERVED_TAG, TmfFunction } from '../../src/pdu/opcodes';
import { encodeTextData, parseTextData } from '../../src/login/text';
import { lookupKey } from '../../src/login/keys';
import { crc32cRef } from '../../src/pdu/crc32c-ref';
import { lunField } from '../../src/scsi/lun';
import { ChapInitiator, type ChapCredentials } from './chap-initiator';
import { snLt } from '../../src/session/serial';

export interface LoginOptions {
  initiatorName?: string;
  targetName?: string;
  sessionType?: 'Normal' | 'Discovery';
  isid?: Buffer;
  tsih?: number;
  cid?: number;
  keys?: Array<[string, string]>;
  /** Start in the security stage with AuthMethod=None (as open-iscsi does). */
  security?: boolean;
  /** Authenticate with CHAP in the security stage (mutual when `chap.mutual` is given). */
  chap?: ChapCredentials;
  /** Send the leading-only keys on a non-leading login too (to test that the target refuses them). */
  sendLeadingOnly?: boolean;
}

export interface LoginResult {
  isid: Buffer;
  status: number;
  tsih: number;
  keys: Map<string, string>;
}

export interface ScsiOptions {
  lun?: number;
  edtl: number;
  read?: boolean;
  write?: boolean;
  /** Write data: up to `immediate` bytes go as immediate data, the rest as Data-Out on R2T. */
  data?: Buffer;
  /** Bytes of immediate data (default: up to 65536). */
  immediate?: number;
  /** Keep the R2Ts for the test to answer with answer() instead of sending the data at once. */
  holdData?: boolean;
  /** Send the command with the I bit (its CmdSN is not advanced). */
  immediateCommand?: boolean;
  /** Give up on the status after this long (default 30 s). */
  timeoutMs?: number;
}

export interface ScsiResult {
  itt: number;
  status: number;
  data: Buffer;
  sense: Buffer | null;
  /** The SCSI Response, or the Data-In that carried the status. */
  response: Pdu;
  residual: number;
  flags: number;
  statSN: number;
}

export interface TmfOptions {
  lun?: number;
  referencedTaskTag?: number;
  /** RefCmdSN (ABORT TASK); default: the referenced task's CmdSN when it is one of ours, else the next CmdSN. */
  refCmdSN?: number;
  expDataSN?: number;
  /** Immediate delivery (default true, as initiators usually send TMFs). */
  immediate?: boolean;
  timeoutMs?: number;
}

export interface TmfResult {
  response: number;
  itt: number;
  statSN: number;
  pdu: Pdu;
  /** ITTs of our outstanding tasks that the function ended (rejected with TaskAbortedError). */
  aborted: number[];
}

/** The target broke the protocol (RFC 7143) as seen from this initiator. */
export class ProtocolViolation extends Error {
  override readonly name = 'ProtocolViolation';
}

/** A task ended by a task management function before its status arrived. */
export class TaskAbortedError extends Error {
  override readonly name = 'TaskAbortedError';
}

/** The target answered a request of ours with a Reject PDU. */
export class RejectedError extends Error {
  override readonly name = 'RejectedError';
  constructor(
    message: string,
    readonly reason: number,
  ) {
    super(message);
  }
}

export const TEST_INITIATOR = 'iqn.2026-11.io.nodetgt.test:initiator';

/**
 * A fresh ISID for every login of this process. (A random last byte made two sessions of the same initiator
 * share an ISID 1 time in 256, and the second login then reinstated, i.e. ended, the first.)
 */
let isidCounter = Math.floor(Math.random() * 0x10000);
function nextIsid(): Buffer {
  isidCounter = (isidCounter + 1) & 0xffff;
  return Buffer.from([0x80, 0x12, 0x34, 0x56, isidCounter >> 8, isidCounter & 0xff]);
}

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
// Waits for an answer that should come: generous, since a loaded 2-core machine is slow and the wait ends as soon
// as the answer is there; a test expecting no answer passes its own, shorter timeout.
const DEFAULT_TIMEOUT = 30_000;
const TMF_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(TmfFunction).map(([k, v]) => [v, k]),
);

/** Session parameters this initiator needs to check and drive the data path. */
interface Params {
  maxBurstLength: number;
  firstBurstLength: number;
  maxOutstandingR2T: number;
  dataPduInOrder: boolean;
  dataSequenceInOrder: boolean;
  /** What we declared: the largest data segment the target may send us. */
  ourMaxRecv: number;
  /** What the target declared: the largest data segment we may send. */
  targetMaxRecv: number;
  /** The negotiated ErrorRecoveryLevel (1: recovery R2Ts and retransmitted status are legal). */
  errorRecoveryLevel: number;
}

/** One outstanding request, keyed by its ITT. */
interface Exchange {
  readonly kind: string;
  readonly itt: number;
  readonly cmdSN: number;
  readonly immediate: boolean;
  /** Handle a PDU with this ITT; throw ProtocolViolation on anything wrong. Returns true when the exchange is over. */
  handle(p: Pdu): boolean;
  /** End the exchange with an error (violation, timeout, closed connection, TMF). */
  fail(e: Error): void;
  /** Whether a caller holds the promise (so a rejection reaches a test). */
  readonly observed: boolean;
  timer: NodeJS.Timeout | null;
  describe(): string;
}

class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (v: T) => void;
  reject!: (e: Error) => void;
  constructor() {
    this.promise = new Promise<T>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // Unobserved rejections are kept by the initiator (see ProtocolViolation), not reported as unhandled.
    this.promise.catch(() => undefined);
  }
}

/** A SCSI command in flight. */
export class ScsiTask implements Exchange {
  readonly kind = 'SCSI command';
  readonly lunRaw: bigint;
  timer: NodeJS.Timeout | null = null;
  /** R2Ts kept for the test (holdData) and not yet answered. */
  readonly heldR2Ts: R2T[] = [];
  private readonly result = new Deferred<ScsiResult>();
  private isObserved = false;
  private r2tWaiters: Array<{ resolve: (r: R2T) => void; reject: (e: Error) => void }> = [];
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private nextDataSN = 0;
  private dataIns = 0;
  private seqBytes = 0;
  private nextR2TSN = 0;
  private r2ts = 0;
  private nextR2TOffset: number;
  private readonly unanswered = new Set<number>();
  private over = false;
  /** Every R2T received for this task, in order (a test checks what was asked for, e.g. after a reassignment). */
  readonly r2tLog: R2T[] = [];
  /**
   * Set once the task moved to another connection (TASK REASSIGN, ERL 2): R2Ts sent on the lost connection may
   * never have arrived, so R2TSN may skip and an R2T may ask again for bytes sent there.
   */
  reassigned = false;

  constructor(
    private ini: TestInitiator,
    readonly itt: number,
    readonly cmdSN: number,
    readonly immediate: boolean,
    readonly lun: number,
    readonly cdb: Buffer,
    readonly edtl: number,
    readonly read: boolean,
    readonly write: boolean,
    readonly data: Buffer | undefined,
    readonly immediateBytes: number,
    public holdData: boolean,
  ) {
    this.lunRaw = lunField(lun);
    this.nextR2TOffset = immediateBytes;
  }

  /** Settles with the status; rejects with TaskAbortedError, RejectedError, ProtocolViolation or a timeout. */
  get done(): Promise<ScsiResult> {
    this.isObserved = true;
    return this.result.promise;
  }

  get observed(): boolean {
    return this.isObserved;
  }

  describe(): string {
    return `SCSI command ITT ${hex(this.itt)} CmdSN ${this.cmdSN} (opcode 0x${this.cdb[0].toString(16)}, LUN ${this.lun}, EDTL ${this.edtl})`;
  }

  /** The next R2T kept for the test (holdData), waiting for it if none has come yet. */
  r2t(timeoutMs = 15_000): Promise<R2T> {
    const held = this.heldR2Ts[0];
    if (held) return Promise.resolve(held);
    if (this.over) return Promise.reject(new Error(`no R2T for ${this.describe()}: the task is over`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.r2tWaiters = this.r2tWaiters.filter((w) => w !== waiter);
        reject(new Error(`no R2T for ${this.describe()} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        resolve: (r: R2T) => {
          clearTimeout(t);
          resolve(r);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.r2tWaiters.push(waiter);
    });
  }

  /** The test answered this R2T itself (with Data-Out built by hand): it is no longer held nor unanswered. */
  answeredByHand(r2t: R2T): void {
    const i = this.heldR2Ts.indexOf(r2t);
    if (i >= 0) this.heldR2Ts.splice(i, 1);
    this.unanswered.delete(r2t.ttt);
  }

  /** Send the Data-Out PDUs an R2T asks for (also for a task already ended: to see what the target says). */
  answer(r2t: R2T): void {
    const i = this.heldR2Ts.indexOf(r2t);
    if (i >= 0) this.heldR2Ts.splice(i, 1);
    this.sendData(r2t);
  }

  /**
   * ERL 2: the task now belongs to connection `ini` (TASK REASSIGN). R2Ts held from the lost connection are void;
   * with `retry` the command is sent again from scratch (the target never had it: RFC 7143 sec. 7.2.1).
   */
  moveTo(ini: TestInitiator, retry = false): void {
    this.ini = ini;
    this.heldR2Ts.length = 0;
    this.unanswered.clear();
    this.reassigned = !retry;
    if (!retry) return;
    // A new instance of the command: every check starts over.
    this.chunks.length = 0;
    this.received = 0;
    this.nextDataSN = 0;
    this.dataIns = 0;
    this.seqBytes = 0;
    this.nextR2TSN = 0;
    this.r2ts = 0;
    this.nextR2TOffset = this.immediateBytes;
  }

  /** The ExpDataSN a TASK REASSIGN carries: the next Data-In DataSN for a READ, the next R2TSN for a WRITE. */
  get expDataSN(): number {
    return this.read ? this.nextDataSN : this.nextR2TSN;
  }

  /** Whether the status has come (or the task ended otherwise). */
  get isOver(): boolean {
    return this.over;
  }

  handle(p: Pdu): boolean {
    if (this.over)
      throw this.ini.violation(`${opcodeName(p.opcode)} for ${this.describe()} after its status`);
    switch (p.opcode) {
      case Opcode.DataIn:
        return this.onDataIn(p);
      case Opcode.R2T:
        this.onR2T(p);
        return false;
      case Opcode.ScsiResponse:
        return this.onResponse(p);
      default:
        throw this.ini.violation(`${opcodeName(p.opcode)} with the ITT of ${this.describe()}`);
    }
  }

  fail(e: Error): void {
    this.over = true;
    this.result.reject(e);
    for (const w of this.r2tWaiters) w.reject(e);
    this.r2tWaiters = [];
  }

  private onDataIn(p: Pdu): boolean {
    const ini = this.ini;
    const d = decodeDataIn(p);
    const len = p.data.length;
    const what = `Data-In DataSN ${d.dataSN} for ${this.describe()}`;
    if (!this.read) throw ini.violation(`${what}: the command has no R bit`);
    if (d.dataSN !== this.nextDataSN)
      throw ini.violation(
        `${what}: expected DataSN ${this.nextDataSN} (DataSN runs 0, 1, 2, ... without gaps, RFC 7143 11.7.5)`,
      );
    this.nextDataSN++;
    this.dataIns++;
    if (ini.params.dataPduInOrder && d.bufferOffset !== this.received)
      throw ini.violation(
        `${what}: buffer offset ${d.bufferOffset}, expected ${this.received} (contiguous, DataPDUInOrder=Yes)`,
      );
    if (d.bufferOffset + len > this.edtl)
      throw ini.violation(
        `${what}: bytes ${d.bufferOffset}..${d.bufferOffset + len} beyond EDTL ${this.edtl}`,
      );
    if (len > ini.params.ourMaxRecv)
      throw ini.violation(
        `${what}: ${len} data bytes, above our MaxRecvDataSegmentLength ${ini.params.ourMaxRecv}`,
      );
    this.seqBytes += len;
    if (this.seqBytes > ini.params.maxBurstLength)
      throw ini.violation(
        `${what}: the Data-In sequence reaches ${this.seqBytes} bytes without the F bit, above MaxBurstLength ${ini.params.maxBurstLength} (RFC 7143 13.14)`,
      );
    if (d.final) this.seqBytes = 0;
    if (d.statusPresent && !d.final) throw ini.violation(`${what}: S bit without the F bit`);
    if (len) this.chunks.push(Buffer.from(p.data));
    this.received += len;
    if (!d.statusPresent) return false;
    this.checkStatus(p, d.residualOverflow, d.residualUnderflow, d.residualCount);
    this.complete(p, d.status, null, d.residualCount, d.statSN);
    return true;
  }

  private onR2T(p: Pdu): void {
    const ini = this.ini;
    const r = decodeR2T(p);
    const what = `R2T R2TSN ${r.r2tSN} for ${this.describe()}`;
    if (!this.write) throw ini.violation(`${what}: the command has no W bit`);
    this.r2tLog.push(r);
    if (this.reassigned ? snLt(r.r2tSN, this.nextR2TSN) : r.r2tSN !== this.nextR2TSN)
      throw ini.violation(`${what}: expected R2TSN ${this.nextR2TSN} (R2TSN runs 0, 1, 2, ... without gaps)`);
    this.nextR2TSN = r.r2tSN + 1;
    this.r2ts++;
    if (r.ttt === RESERVED_TAG)
      throw ini.violation(`${what}: Target Transfer Tag is the reserved 0xffffffff`);
    if (r.lun !== this.lunRaw) throw ini.violation(`${what}: LUN field differs from the command's`);
    const len = r.desiredDataTransferLength;
    if (len === 0) throw ini.violation(`${what}: Desired Data Transfer Length 0`);
    if (len > ini.params.maxBurstLength)
      throw ini.violation(
        `${what}: asks for ${len} bytes, above MaxBurstLength ${ini.params.maxBurstLength}`,
      );
    if (r.bufferOffset + len > this.edtl)
      throw ini.violation(
        `${what}: asks for bytes ${r.bufferOffset}..${r.bufferOffset + len} beyond EDTL ${this.edtl}`,
      );
    // ERL 1: a recovery R2T asks again for bytes sent already (lost to a digest error, RFC 7143 sec. 7.8).
    const recovery =
      this.reassigned || (ini.params.errorRecoveryLevel > 0 && r.bufferOffset + len <= this.nextR2TOffset);
    if (ini.params.dataSequenceInOrder && !recovery && r.bufferOffset !== this.nextR2TOffset)
      throw ini.violation(
        `${what}: buffer offset ${r.bufferOffset}, expected ${this.nextR2TOffset} (the next bytes not yet sent nor requested, DataSequenceInOrder=Yes)`,
      );
    if (!recovery) this.nextR2TOffset = r.bufferOffset + len;
    if (this.unanswered.size >= ini.params.maxOutstandingR2T)
      throw ini.violation(
        `${what}: more than MaxOutstandingR2T=${ini.params.maxOutstandingR2T} R2Ts unanswered`,
      );
    this.unanswered.add(r.ttt);
    if (this.holdData) {
      this.heldR2Ts.push(r);
      const w = this.r2tWaiters.shift();
      if (w) w.resolve(r);
    } else {
      this.sendData(r);
    }
  }

  private sendData(r: R2T): void {
    const ini = this.ini;
    this.unanswered.delete(r.ttt);
    const end = r.bufferOffset + r.desiredDataTransferLength;
    const max = ini.params.targetMaxRecv;
    const data = this.data ?? Buffer.alloc(0);
    let sn = 0;
    for (let pos = r.bufferOffset; pos < end; pos += max) {
      const stop = Math.min(pos + max, end);
      ini.send(
        encodeDataOut({
          final: stop === end,
          lun: this.lunRaw,
          itt: this.itt,
          ttt: r.ttt,
          expStatSN: ini.expStatSN,
          dataSN: sn++,
          bufferOffset: pos,
        }),
        data.subarray(pos, stop),
      );
    }
  }

  private onResponse(p: Pdu): boolean {
    const ini = this.ini;
    const r = decodeScsiResponse(p);
    const what = `SCSI Response for ${this.describe()}`;
    if (!p.final) throw ini.violation(`${what}: F bit not set`);
    // After a reassignment, R2Ts lost with the old connection count in ExpDataSN but never arrived here.
    if (r.response === 0 && !this.reassigned && r.expDataSN !== this.dataIns + this.r2ts)
      throw ini.violation(
        `${what}: ExpDataSN ${r.expDataSN}, but the target sent ${this.dataIns} Data-In and ${this.r2ts} R2T PDUs`,
      );
    this.checkStatus(p, r.residualOverflow, r.residualUnderflow, r.residualCount);
    let sense: Buffer | null = null;
    if (p.data.length >= 2) {
      const n = p.data.readUInt16BE(0);
      if (2 + n > p.data.length) throw ini.violation(`${what}: SenseLength ${n} beyond the data segment`);
      if (n) sense = Buffer.from(p.data.subarray(2, 2 + n));
    }
    this.complete(p, r.status, sense, r.residualCount, r.statSN);
    return true;
  }

  private checkStatus(p: Pdu, overflow: boolean, underflow: boolean, residual: number): void {
    const ini = this.ini;
    const what = `status for ${this.describe()}`;
    if (!this.immediate && !snLt(this.cmdSN, p.bhs.readUInt32BE(28)))
      throw ini.violation(
        `${what}: ExpCmdSN ${p.bhs.readUInt32BE(28)} does not acknowledge the CmdSN ${this.cmdSN} it answers`,
      );
    if (overflow && underflow) throw ini.violation(`${what}: both O and U bits`);
    if ((overflow || underflow) && residual === 0)
      throw ini.violation(`${what}: O/U bit with a residual count of 0`);
    // A read's data and residual add up to EDTL (RFC 7143 11.4.5); without a residual, a failed command may
    // have sent less.
    if (this.read && !this.write && (underflow || overflow || p.bhs[3] === 0)) {
      const expect = underflow ? this.edtl - residual : this.edtl;
      if (this.received !== expect)
        throw ini.violation(
          `${what}: ${this.received} bytes of Data-In, EDTL ${this.edtl}, ${underflow ? 'U' : overflow ? 'O' : 'no'} residual ${residual}: they do not add up`,
        );
    }
  }

  private complete(p: Pdu, status: number, sense: Buffer | null, residual: number, statSN: number): void {
    this.over = true;
    this.result.resolve({
      itt: this.itt,
      status,
      data: Buffer.concat(this.chunks),
      sense,
      response: p,
      residual,
      flags: p.bhs[1],
      statSN,
    });
  }
}

/** A request answered by one PDU of a given opcode (NOP-Out, TMF, Logout, raw), or a Text exchange. */
class SimpleExchange<T> implements Exchange {
  timer: NodeJS.Timeout | null = null;
  readonly result = new Deferred<T>();
  constructor(
    readonly kind: string,
    readonly itt: number,
    readonly cmdSN: number,
    readonly immediate: boolean,
    private readonly onReply: (p: Pdu) => { done: true; value: T } | { done: false },
  ) {}
  get observed(): boolean {
    return true;
  }
  describe(): string {
    return `${this.kind} ITT ${hex(this.itt)} CmdSN ${this.cmdSN}`;
  }
  handle(p: Pdu): boolean {
    const r = this.onReply(p);
    if (r.done) this.result.resolve(r.value);
    return r.done;
  }
  fail(e: Error): void {
    this.result.reject(e);
  }
}

export class TestInitiator {
  private readonly queue: Pdu[] = [];
  private waiters: Array<{ resolve: (p: Pdu | null) => void; reject: (e: Error) => void }> = [];
  private readonly parser: PduParser;
  private readonly exchanges = new Map<number, Exchange>();
  /** ITTs of exchanges that are over, with how they ended: a later reply names them in its violation. */
  private readonly ended = new Map<number, string>();
  private phase: 'login' | 'ffp' = 'login';
  /** ITTs of exchanges a test drives by hand (byHand): their PDUs go to next(), unmatched. */
  private readonly handDriven = new Set<number>();
  private statSNKnown = false;
  private lastExpCmdSN: number | null = null;
  private lastMaxCmdSN: number | null = null;
  /** Every Async Message received, decoded, in order (each also goes to next()). */
  readonly asyncMessages: AsyncMessage[] = [];
  private asyncWaiters: Array<() => void> = [];
  /** The first violation, kept for every later call. */
  failure: ProtocolViolation | null = null;
  private failureSeen = false;
  closed = false;
  readonly closedPromise: Promise<void>;
  /**
   * CmdSN and ITT counters: the session's, shared by every connection of an MC/S session (shareNumbers), since
   * CmdSN is one space per session and ITTs are unique in it.
   */
  private numbers = { cmdSN: 1, itt: 1 };
  get cmdSN(): number {
    return this.numbers.cmdSN;
  }
  set cmdSN(v: number) {
    this.numbers.cmdSN = v;
  }
  get itt(): number {
    return this.numbers.itt;
  }
  set itt(v: number) {
    this.numbers.itt = v;
  }
  /** From now on this connection numbers its requests in the same CmdSN and ITT spaces as `other`. */
  shareNumbers(other: TestInitiator): void {
    this.numbers = other.numbers;
  }
  expStatSN = 0;
  headerDigest = false;
  dataDigest = false;
  /** PDUs sent with send() since the login completed. */
  pdusSent = 0;
  /** Of those, PDUs with a data segment. */
  dataPdusSent = 0;
  /**
   * ExpCmdSN may not pass the CmdSNs this initiator sent. Off for a connection that joins an existing session
   * (MC/S), whose other connections advance the session's CmdSN too.
   */
  checkCmdSNBound = true;
  params: Params = {
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    maxOutstandingR2T: 1,
    dataPduInOrder: true,
    dataSequenceInOrder: true,
    ourMaxRecv: 8192,
    targetMaxRecv: 8192,
    errorRecoveryLevel: 0,
  };

  private constructor(readonly socket: net.Socket) {
    this.parser = new PduParser({
      onPdu: (p) => this.onPdu(p),
      onError: (e) => this.onParseError(e),
      crc32c: crc32cRef,
      maxDataSegmentLength: 16 * 1024 * 1024,
    });
    socket.on('data', (d: Buffer) => this.parser.push(d));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        for (const w of this.waiters) w.resolve(null);
        this.waiters = [];
        for (const ex of [...this.exchanges.values()])
          this.end(
            ex,
            'unanswered when the connection closed',
            new Error(`connection closed before the answer to ${ex.describe()}`),
          );
        resolve();
      }),
    );
  }

  /** `localAddress` picks the source address (e.g. 127.0.0.2: any 127/8 address is local on Linux). */
  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<TestInitiator> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host, localAddress }, () => {
        s.off('error', reject);
        s.setNoDelay(true);
        resolve(new TestInitiator(s));
      });
      s.once('error', reject);
    });
  }

  // ---- sending ---------------------------------------------------------------------------------

  sendRaw(buf: Buffer): void {
    this.socket.write(buf);
  }

  send(bhs: Buffer, data: Buffer | null = null): void {
    const iov = frame(bhs, data, {
      headerDigest: this.headerDigest,
      dataDigest: this.dataDigest,
      crc32c: crc32cRef,
    });
    if (this.phase === 'ffp') {
      this.pdusSent++;
      if (data && data.length) this.dataPdusSent++;
    }
    this.socket.write(Buffer.concat(iov));
  }

  // ---- receiving and checking -------------------------------------------------------------------

  /** Record a violation (to throw): every pending promise rejects with it, and every later call. */
  violation(message: string): ProtocolViolation {
    const e = new ProtocolViolation(`target protocol violation: ${message}`);
    if (this.failure) return e;
    this.failure = e;
    for (const w of this.waiters) w.reject(e);
    if (this.waiters.length) this.failureSeen = true;
    this.waiters = [];
    for (const ex of [...this.exchanges.values()]) {
      if (ex.observed) this.failureSeen = true;
      this.end(ex, 'failed', e);
    }
    return e;
  }

  /** A violation thrown straight to a caller. */
  private seen(e: ProtocolViolation): ProtocolViolation {
    this.failureSeen = true;
    return e;
  }

  /** Throw the recorded violation, if any (every public call starts here). */
  private throwIfFailed(): void {
    if (this.failure) {
      this.failureSeen = true;
      throw this.failure;
    }
  }

  private onParseError(e: PduParseError): void {
    this.violation(
      `received a PDU that fails to parse (${e.kind}: ${e.message}), opcode 0x${e.bhs[0].toString(16)}`,
    );
    this.socket.destroy();
  }

  private onPdu(p: Pdu): void {
    if (this.failure) return;
    try {
      this.checkNumbers(p);
      if (this.phase === 'login') this.push(p);
      else this.route(p);
    } catch (e) {
      if (!(e instanceof ProtocolViolation))
        this.violation(`error while checking a PDU: ${(e as Error).stack}`);
    }
  }

  /** StatSN, ExpCmdSN and MaxCmdSN of every PDU (RFC 7143 4.2.2). */
  private checkNumbers(p: Pdu): void {
    const op = p.opcode;
    const b = p.bhs;
    const name = `${opcodeName(op)} (ITT ${hex(p.itt)})`;
    const statSN = b.readUInt32BE(24);
    const withStatus = op === Opcode.LoginResponse || bhsConsumedStatSN(b) !== null;
    // At ERL 1 a SNACK gets a response again: a StatSN below the next one is a retransmission (RFC 7143 11.16).
    const replay = this.params.errorRecoveryLevel > 0 && this.statSNKnown && snLt(statSN, this.expStatSN);
    if (withStatus && replay) {
      // a retransmitted response: numbering goes on from where it was
    } else if (withStatus) {
      if (this.statSNKnown && statSN !== this.expStatSN)
        throw this.violation(
          `${name} carries StatSN ${statSN}, expected ${this.expStatSN} (StatSN increases by one per response, RFC 7143 4.2.2.2)`,
        );
      this.expStatSN = (statSN + 1) >>> 0;
      this.statSNKnown = true;
    } else if (
      (op === Opcode.R2T || op === Opcode.NopIn) &&
      this.statSNKnown &&
      statSN !== this.expStatSN &&
      !(op === Opcode.R2T && replay)
    ) {
      throw this.violation(
        `${name} carries StatSN ${statSN}, expected the next StatSN ${this.expStatSN} (not advanced)`,
      );
    }
    if (this.phase !== 'ffp') return;
    const exp = b.readUInt32BE(28);
    const max = b.readUInt32BE(32);
    if (snLt(max, (exp - 1) >>> 0))
      throw this.violation(`${name}: MaxCmdSN ${max} is below ExpCmdSN ${exp} - 1 (RFC 7143 4.2.2.1)`);
    if (this.lastExpCmdSN !== null && snLt(exp, this.lastExpCmdSN))
      throw this.violation(`${name}: ExpCmdSN went back from ${this.lastExpCmdSN} to ${exp}`);
    if (this.lastMaxCmdSN !== null && snLt(max, this.lastMaxCmdSN))
      throw this.violation(
        `${name}: MaxCmdSN went back from ${this.lastMaxCmdSN} to ${max}: the window shrank`,
      );
    if (this.checkCmdSNBound && snLt(this.cmdSN, exp))
      throw this.violation(`${name}: ExpCmdSN ${exp} is past the next CmdSN we would send (${this.cmdSN})`);
    this.lastExpCmdSN = exp;
    this.lastMaxCmdSN = max;
  }

  private route(p: Pdu): void {
    const op = p.opcode;
    const name = `${opcodeName(op)} (ITT ${hex(p.itt)})`;
    switch (op) {
      case Opcode.NopIn:
        if (p.itt === RESERVED_TAG) {
          this.push(p); // a ping
          return;
        }
        break;
      case Opcode.AsyncMessage:
        if (p.itt !== RESERVED_TAG) throw this.violation(`${name}: an Async Message has ITT 0xffffffff`);
        this.asyncMessages.push(decodeAsyncMessage(p));
        for (const w of this.asyncWaiters.splice(0)) w();
        this.push(p);
        return;
      case Opcode.Reject:
        if (p.itt !== RESERVED_TAG) throw this.violation(`${name}: a Reject has ITT 0xffffffff`);
        this.onReject(p);
        this.push(p);
        return;
      case Opcode.LoginResponse:
        throw this.violation(`${name} in full feature phase`);
    }
    if (this.handDriven.has(p.itt)) {
      this.push(p); // the test reads and checks this exchange itself
      return;
    }
    const ex = this.exchanges.get(p.itt);
    if (!ex) {
      const how = this.ended.get(p.itt);
      throw this.violation(
        how
          ? `${name} for a task that is over (${how}): a late or duplicate reply`
          : `${name} for an ITT that names no outstanding task (outstanding: ${[...this.exchanges.keys()].map(hex).join(', ') || 'none'})`,
      );
    }
    if (ex.handle(p)) this.end(ex, `answered by ${opcodeName(op)}`);
  }

  /** A Reject of one of our requests ends that exchange. */
  private onReject(p: Pdu): void {
    if (p.data.length < 48)
      throw this.violation(`Reject without the complete offending header (${p.data.length} bytes)`);
    const reason = decodeReject(p).reason;
    const op = p.data[0] & 0x3f;
    const itt = p.data.readUInt32BE(16);
    const ex = this.exchanges.get(itt);
    if (!ex || op === Opcode.DataOut || op === Opcode.Snack) return;
    this.end(
      ex,
      `rejected (reason 0x${reason.toString(16)})`,
      new RejectedError(`${ex.describe()} rejected by the target, reason 0x${reason.toString(16)}`, reason),
    );
  }

  private push(p: Pdu): void {
    const w = this.waiters.shift();
    if (w) w.resolve(p);
    else this.queue.push(p);
  }

  private track(ex: Exchange, timeoutMs: number): void {
    if (this.exchanges.has(ex.itt)) throw new Error(`ITT ${hex(ex.itt)} is already outstanding`);
    this.exchanges.set(ex.itt, ex);
    this.ended.delete(ex.itt);
    if (timeoutMs > 0) {
      ex.timer = setTimeout(
        () =>
          this.end(
            ex,
            `timed out after ${timeoutMs} ms`,
            new Error(`no answer to ${ex.describe()} within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      ex.timer.unref();
    }
  }

  private end(ex: Exchange, how: string, error?: Error): void {
    if (this.exchanges.get(ex.itt) !== ex) return;
    this.exchanges.delete(ex.itt);
    if (ex.timer) clearTimeout(ex.timer);
    this.ended.set(ex.itt, `${ex.describe()} ${how}`);
    if (this.ended.size > 4096) this.ended.delete(this.ended.keys().next().value!);
    if (error) ex.fail(error);
  }

  /** Exchanges still waiting for an answer. */
  get outstanding(): number {
    return this.exchanges.size;
  }

  /**
   * The next unsolicited PDU (NOP-In ping, Async Message, Reject) — or, during login, the next PDU; null if the
   * connection closed first or the timeout passed. Rejects with the violation if the target broke the protocol.
   */
  next(timeoutMs = 15_000): Promise<Pdu | null> {
    if (this.failure) {
      this.failureSeen = true;
      return Promise.reject(this.failure);
    }
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(null);
      }, timeoutMs);
      const waiter = {
        resolve: (p: Pdu | null) => {
          clearTimeout(t);
          resolve(p);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * The first Async Message with this AsyncEvent, received already or within timeoutMs; null if none came (or
   * the connection closed first).
   */
  async asyncEvent(event: number, timeoutMs = 15_000): Promise<AsyncMessage | null> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = this.asyncMessages.find((a) => a.asyncEvent === event);
      if (m) return m;
      if (this.closed || Date.now() >= until) return null;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, until - Date.now());
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.asyncWaiters.push(done);
        void this.closedPromise.then(done);
      });
    }
  }

  /** Unsolicited PDUs received and not yet taken with next(). */
  get pending(): readonly Pdu[] {
    return this.queue;
  }

  // ---- login -----------------------------------------------------------------------------------

  async login(o: LoginOptions = {}): Promise<LoginResult> {
    this.throwIfFailed();
    const isid = o.isid ?? nextIsid();
    const itt = this.itt++;
    const joining = (o.tsih ?? 0) !== 0;
    // A connection joining a session (non-leading login) must not send the leading-only keys: the session's
    // values were settled by its leading login (RFC 7143 sec. 6.2).
    const opKeys = (o.keys ?? defaultOperationalKeys()).filter(
      ([k]) => !joining || o.sendLeadingOnly || lookupKey(k)?.use !== 'LO',
    );
    let keys: Array<[string, string]> = [['InitiatorName', o.initiatorName ?? TEST_INITIATOR]];
    keys.push(['SessionType', o.sessionType ?? 'Normal']);
    if ((o.sessionType ?? 'Normal') === 'Normal') keys.push(['TargetName', o.targetName ?? '']);
    let csg = 1;
    const chap = o.chap ? new ChapInitiator(o.chap) : null;
    let transit = true;
    if (chap) {
      csg = 0;
      transit = false;
      keys.push(...chap.firstKeys());
    } else if (o.security) {
      csg = 0;
      keys.push(['AuthMethod', 'None']);
    } else {
      keys.push(...opKeys);
    }
    const ours = new Map(o.keys ?? defaultOperationalKeys());
    const got = new Map<string, string>();
    for (let round = 0; round < 8; round++) {
      const nsg = csg === 0 ? 1 : 3;
      this.send(
        encodeLoginRequest({
          transit,
          continue: false,
          csg,
          nsg: transit ? nsg : 0,
          isid,
          tsih: o.tsih ?? 0,
          itt,
          cid: o.cid ?? 0,
          cmdSN: this.cmdSN,
          expStatSN: this.expStatSN,
        }),
        keys.length ? encodeTextData(keys) : null,
      );
      const p = await this.next(DEFAULT_TIMEOUT);
      if (!p)
        throw new Error(this.closed ? 'connection closed during login' : 'no Login Response within 30 s');
      if (p.opcode !== Opcode.LoginResponse)
        throw this.seen(this.violation(`${opcodeName(p.opcode)} during login`));
      if (p.itt !== itt)
        throw this.seen(this.violation(`Login Response with ITT ${hex(p.itt)}, the request had ${hex(itt)}`));
      const r = decodeLoginResponse(p);
      const parsed = parseTextData(p.data);
      const answers: Array<[string, string]> = [];
      for (const [k, v] of parsed.pairs) {
        // Keys the target proposes: answer with the same value (we accept what it offers).
        if (!got.has(k) && !keys.some(([kk]) => kk === k) && isProposal(k)) answers.push([k, v]);
        got.set(k, v);
      }
      const status = (r.statusClass << 8) | r.statusDetail;
      if (status !== 0) return { isid, status, tsih: 0, keys: got };
      const thisResponse = new Map(parsed.pairs);
      if (chap && csg === 0) chap.verifyTarget(thisResponse);
      if (chap && r.transit && !chap.done)
        throw this.seen(this.violation('target left the security stage before CHAP'));
      if (r.transit && r.nsg === 3) {
        // A joining connection goes on in its session's CmdSN space (shareNumbers), wherever the target's is.
        if (!joining) this.cmdSN = r.expCmdSN;
        this.headerDigest = got.get('HeaderDigest') === 'CRC32C';
        this.dataDigest = got.get('DataDigest') === 'CRC32C';
        this.parser.headerDigest = this.headerDigest;
        this.parser.dataDigest = this.dataDigest;
        const key = (k: string, dflt: string) => got.get(k) ?? ours.get(k) ?? dflt;
        this.params = {
          maxBurstLength: Number(key('MaxBurstLength', '262144')),
          firstBurstLength: Number(key('FirstBurstLength', '65536')),
          maxOutstandingR2T: Number(key('MaxOutstandingR2T', '1')),
          dataPduInOrder: key('DataPDUInOrder', 'Yes') === 'Yes',
          dataSequenceInOrder: key('DataSequenceInOrder', 'Yes') === 'Yes',
          ourMaxRecv: Number(ours.get('MaxRecvDataSegmentLength') ?? '8192'),
          targetMaxRecv: Number(got.get('MaxRecvDataSegmentLength') ?? '8192'),
          errorRecoveryLevel: Number(key('ErrorRecoveryLevel', '0')),
        };
        if ((o.tsih ?? 0) !== 0) this.checkCmdSNBound = false;
        this.phase = 'ffp';
        this.lastExpCmdSN = r.expCmdSN;
        this.lastMaxCmdSN = r.maxCmdSN;
        return { isid, status, tsih: r.tsih, keys: got };
      }
      if (r.transit && r.nsg === 1) {
        csg = 1;
        transit = true;
        keys = opKeys;
      } else if (chap && csg === 0) {
        ({ keys, transit } = chap.next(thisResponse));
      } else {
        keys = answers;
      }
    }
    throw new Error('login did not complete');
  }

  // ---- full feature phase ----------------------------------------------------------------------

  /**
   * Issue a SCSI command and return its task at once (several may be outstanding). Write data goes as
   * immediate data, the rest on R2T (or kept for the test with holdData).
   */
  start(cdb: Buffer, o: ScsiOptions = { edtl: 0 }): ScsiTask {
    this.throwIfFailed();
    const itt = this.itt++;
    const immediateCmd = !!o.immediateCommand;
    const cmdSN = immediateCmd ? this.cmdSN : this.cmdSN++;
    const imm = o.data ? o.data.subarray(0, Math.min(o.immediate ?? 65536, o.data.length)) : null;
    const task = new ScsiTask(
      this,
      itt,
      cmdSN,
      immediateCmd,
      o.lun ?? 0,
      Buffer.from(cdb),
      o.edtl,
      !!o.read,
      !!o.write,
      o.data,
      imm ? imm.length : 0,
      !!o.holdData,
    );
    this.track(task, o.timeoutMs ?? DEFAULT_TIMEOUT);
    this.send(
      encodeScsiCommand({
        immediate: immediateCmd,
        final: true,
        read: !!o.read,
        write: !!o.write,
        attr: 1,
        lun: task.lunRaw,
        itt,
        expectedDataTransferLength: o.edtl,
        cmdSN,
        expStatSN: this.expStatSN,
        cdb,
      }),
      imm && imm.length ? imm : null,
    );
    return task;
  }

  /** A SCSI command; resolves with the Data-In and the status. */
  scsi(cdb: Buffer, o: ScsiOptions = { edtl: 0 }): Promise<ScsiResult> {
    try {
      return this.start(cdb, o).done;
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  /**
   * A task management function request. On "Function complete" our outstanding tasks that the function ends
   * (the referenced task, the LUN's tasks, or all) reject with TaskAbortedError; any later reply for them is a
   * violation.
   */
  async tmf(fn: number, o: TmfOptions = {}): Promise<TmfResult> {
    this.throwIfFailed();
    const itt = this.itt++;
    const immediate = o.immediate ?? true;
    const cmdSN = immediate ? this.cmdSN : this.cmdSN++;
    const lun = o.lun ?? 0;
    const ref = o.referencedTaskTag ?? RESERVED_TAG;
    const refTask = this.exchanges.get(ref);
    const ex = new SimpleExchange<TmfResult>(
      `${TMF_NAMES[fn] ?? `TMF function ${fn}`} request`,
      itt,
      cmdSN,
      immediate,
      (p) => {
        if (p.opcode !== Opcode.TaskMgmtResponse)
          throw this.violation(`${opcodeName(p.opcode)} with the ITT of a TMF request (${hex(itt)})`);
        if (!p.final) throw this.violation('TMF Response without the F bit');
        if (p.dataLength !== 0 || p.bhs[4] !== 0)
          throw this.violation('TMF Response with an AHS or data segment (RFC 7143 11.6.4: both 0)');
        if (!immediate && !snLt(cmdSN, p.bhs.readUInt32BE(28)))
          throw this.violation(`TMF Response: ExpCmdSN does not acknowledge the request's CmdSN ${cmdSN}`);
        const r = decodeTaskMgmtResponse(p);
        const aborted: number[] = [];
        if (r.response === 0) {
          for (const t of [...this.exchanges.values()]) {
            if (!(t instanceof ScsiTask)) continue;
            const hit =
              fn === TmfFunction.AbortTask
                ? t.itt === ref
                : fn === TmfFunction.AbortTaskSet ||
                    fn === TmfFunction.ClearTaskSet ||
                    fn === TmfFunction.LogicalUnitReset
                  ? t.lun === lun
                  : fn === TmfFunction.TargetWarmReset || fn === TmfFunction.TargetColdReset;
            if (!hit) continue;
            aborted.push(t.itt);
            this.end(
              t,
              `aborted by ${TMF_NAMES[fn]}`,
              new TaskAbortedError(`${t.describe()} aborted by ${TMF_NAMES[fn]}`),
            );
          }
        }
        return { done: true, value: { response: r.response, itt: r.itt, statSN: r.statSN, pdu: p, aborted } };
      },
    );
    this.track(ex, o.timeoutMs ?? DEFAULT_TIMEOUT);
    this.send(
      encodeTaskMgmtRequest({
        immediate,
        function: fn,
        lun: lunField(lun),
        itt,
        referencedTaskTag: ref,
        cmdSN,
        expStatSN: this.expStatSN,
        refCmdSN: o.refCmdSN ?? (refTask instanceof ScsiTask ? refTask.cmdSN : this.cmdSN),
        expDataSN: o.expDataSN ?? 0,
      }),
    );
    return ex.result.promise;
  }

  /** Text request (with continuation of long answers); returns every key's values. */
  async text(pairs: Array<[string, string]>): Promise<Map<string, string[]>> {
    this.throwIfFailed();
    const itt = this.itt++;
    const cmdSN = this.cmdSN++;
    const parts: Buffer[] = [];
    const ex = new SimpleExchange<Buffer>('Text request', itt, cmdSN, false, (p) => {
      if (p.opcode !== Opcode.TextResponse)
        throw this.violation(`${opcodeName(p.opcode)} with the ITT of a Text request (${hex(itt)})`);
      parts.push(Buffer.from(p.data));
      const ttt = p.bhs.readUInt32BE(20);
      if (p.final) {
        if (ttt !== RESERVED_TAG)
          throw this.violation('final Text Response with a TTT other than 0xffffffff');
        return { done: true, value: Buffer.concat(parts) };
      }
      if (ttt === RESERVED_TAG) throw this.violation('Text Response to be continued without a TTT');
      this.send(encodeTextRequest({ final: true, itt, ttt, cmdSN: this.cmdSN++, expStatSN: this.expStatSN }));
      return { done: false };
    });
    this.track(ex, DEFAULT_TIMEOUT);
    this.send(
      encodeTextRequest({ final: true, itt, ttt: RESERVED_TAG, cmdSN, expStatSN: this.expStatSN }),
      encodeTextData(pairs),
    );
    const body = await ex.result.promise;
    const out = new Map<string, string[]>();
    for (const [k, v] of parseTextData(body, { allowDuplicates: true }).pairs)
      out.set(k, [...(out.get(k) ?? []), v]);
    return out;
  }

  /** NOP-Out ping (immediate); resolves with the NOP-In, whose data must echo ours. */
  async nop(data: Buffer | null = null): Promise<Pdu> {
    this.throwIfFailed();
    const itt = this.itt++;
    const ex = new SimpleExchange<Pdu>('NOP-Out', itt, this.cmdSN, true, (p) => {
      if (p.opcode !== Opcode.NopIn)
        throw this.violation(`${opcodeName(p.opcode)} with the ITT of a NOP-Out (${hex(itt)})`);
      if (p.bhs.readUInt32BE(20) !== RESERVED_TAG)
        throw this.violation('NOP-In answering a NOP-Out with a TTT');
      if (!p.data.equals(data ?? Buffer.alloc(0)))
        throw this.violation('NOP-In does not echo the NOP-Out data');
      return { done: true, value: p };
    });
    this.track(ex, DEFAULT_TIMEOUT);
    this.send(
      encodeNopOut({ immediate: true, itt, ttt: RESERVED_TAG, cmdSN: this.cmdSN, expStatSN: this.expStatSN }),
      data,
    );
    return ex.result.promise;
  }

  /** Logout: reason 0 (close the session, the default), 1 (close connection `cid`) or 2 (remove it for recovery). */
  async logout(o: { reason?: number; cid?: number } = {}): Promise<Pdu> {
    this.throwIfFailed();
    const itt = this.itt++;
    const ex = new SimpleExchange<Pdu>('Logout request', itt, this.cmdSN, true, (p) => {
      if (p.opcode !== Opcode.LogoutResponse)
        throw this.violation(`${opcodeName(p.opcode)} with the ITT of a Logout request (${hex(itt)})`);
      return { done: true, value: p };
    });
    this.track(ex, DEFAULT_TIMEOUT);
    this.send(
      encodeLogoutRequest({
        immediate: true,
        reasonCode: o.reason ?? 0,
        cid: o.cid ?? 0,
        itt,
        cmdSN: this.cmdSN,
        expStatSN: this.expStatSN,
      }),
    );
    return ex.result.promise;
  }

  /**
   * For a request sent by hand with send(): resolves with the first PDU carrying this ITT (the exchange is then
   * over), so that the reply is not taken for a violation.
   */
  expect(itt: number, o: { cmdSN?: number; immediate?: boolean; timeoutMs?: number } = {}): Promise<Pdu> {
    this.throwIfFailed();
    const ex = new SimpleExchange<Pdu>(
      'request sent by hand',
      itt,
      o.cmdSN ?? this.cmdSN,
      o.immediate ?? true,
      (p) => ({
        done: true,
        value: p,
      }),
    );
    this.track(ex, o.timeoutMs ?? DEFAULT_TIMEOUT);
    return ex.result.promise;
  }

  /**
   * For a test that builds an exchange's PDUs itself and reads the answers with next(): every PDU with this ITT
   * goes to next() without being matched to a task (the numbering checks on StatSN and the CmdSN window still
   * apply). Returns the ITT.
   */
  byHand(itt: number): number {
    this.handDriven.add(itt >>> 0);
    return itt;
  }

  /**
   * ERL 2: kill the connection as a failure would, keeping its SCSI tasks (unfailed) for reassignment to another
   * connection; returns them. Other exchanges end as on any close.
   */
  abandon(): ScsiTask[] {
    const tasks: ScsiTask[] = [];
    for (const ex of [...this.exchanges.values()])
      if (ex instanceof ScsiTask) {
        this.exchanges.delete(ex.itt);
        if (ex.timer) clearTimeout(ex.timer);
        tasks.push(ex);
      }
    this.socket.destroy();
    return tasks;
  }

  /** ERL 2: take over `task` from a lost connection: its PDUs are expected here from now on. */
  adoptTask(task: ScsiTask, timeoutMs = DEFAULT_TIMEOUT): void {
    task.moveTo(this);
    this.track(task, timeoutMs);
  }

  /** Give an adopted task back (its reassignment was refused): it is no longer expected here. */
  disownTask(task: ScsiTask): void {
    const ex = this.exchanges.get(task.itt);
    if (ex !== task) return;
    this.exchanges.delete(task.itt);
    if (task.timer) clearTimeout(task.timer);
  }

  /**
   * Send an adopted task's SCSI Command again, same ITT and CmdSN, with its immediate data (a retry on a new
   * connection once the old one is logged out, RFC 7143 sec. 7.2.1: for a command the target never received).
   */
  retryTask(task: ScsiTask): void {
    task.moveTo(this, true);
    const imm = task.data && task.immediateBytes ? task.data.subarray(0, task.immediateBytes) : null;
    this.send(
      encodeScsiCommand({
        immediate: task.immediate,
        final: true,
        read: task.read,
        write: task.write,
        attr: 1,
        lun: task.lunRaw,
        itt: task.itt,
        expectedDataTransferLength: task.edtl,
        cmdSN: task.cmdSN,
        expStatSN: this.expStatSN,
        cdb: task.cdb,
      }),
      imm,
    );
  }

  /** Drop the connection. Throws the recorded violation if no caller has seen it yet. */
  close(): void {
    this.socket.destroy();
    if (this.failure && !this.failureSeen) {
      this.failureSeen = true;
      throw this.failure;
    }
  }
}

/** A key the target sent that wants an answer: not one of its declarations (RFC 7143 sec. 13). */
function isProposal(k: string): boolean {
  return ![
    'TargetPortalGroupTag',
    'TargetAlias',
    'TargetAddress',
    'TargetName',
    // Declarative: the target's own limit. Echoing it would declare it as ours.
    'MaxRecvDataSegmentLength',
  ].includes(k);
}

export function defaultOperationalKeys(): Array<[string, string]> {
  return [
    ['HeaderDigest', 'None'],
    ['DataDigest', 'None'],
    ['MaxConnections', '4'],
    ['InitialR2T', 'No'],
    ['ImmediateData', 'Yes'],
    ['MaxRecvDataSegmentLength', '262144'],
    ['MaxBurstLength', '1048576'],
    ['FirstBurstLength', '262144'],
    ['DefaultTime2Wait', '2'],
    ['DefaultTime2Retain', '0'],
    ['MaxOutstandingR2T', '1'],
    ['DataPDUInOrder', 'Yes'],
    ['DataSequenceInOrder', 'Yes'],
    ['ErrorRecoveryLevel', '0'],
  ];
}
