/**
 * A lean iSCSI initiator for benchmarks: one connection, one LU, N commands kept in flight, nothing
 * checked beyond what keeps it correct (status GOOD, every byte of each transfer accounted for). It is
 * built on the project's PDU codec (src/pdu) and the native CRC32C, so header and data digests cost it
 * one native call per PDU; test/helpers/initiator.ts is the checking initiator and far too heavy here.
 *
 * Why it exists: QEMU's libiscsi asks for header digests only, so data digests can only be measured
 * through an initiator of our own; the same driver with digests off gives the baseline, and its own CPU
 * per I/O is reported beside the target's so one can see it is not the bottleneck.
 */
import * as net from 'node:net';
import { crc32c, pduCheck, pduSeal } from '../../src/native';
import { PduParser, type PduParseError } from '../../src/pdu/parser';
import { decodeLoginResponse, type Pdu } from '../../src/pdu/pdu';
import { Opcode } from '../../src/pdu/opcodes';
import {
  encodeDataOut,
  encodeLoginRequest,
  encodeLogoutRequest,
  encodeScsiCommand,
  frame,
  type FrameOptions,
} from '../../src/pdu/serializer';
import { encodeTextData, parseTextData } from '../../src/login/text';
import { lunField } from '../../src/scsi/lun';

export interface DriverOptions {
  host: string;
  port: number;
  targetName: string;
  lun: number;
  /** HeaderDigest=CRC32C and DataDigest=CRC32C (required: login fails if the target answers None). */
  digests: boolean;
  initiatorName?: string;
}

export interface Job {
  write: boolean;
  /** Bytes per command (a multiple of the LU's block size). */
  bs: number;
  qd: number;
  /** Stop issuing after this long, s. */
  secs: number;
  /** Byte step between consecutive commands (wraps over the LU); bs gives a sequential walk. */
  step: number;
}

export interface JobResult {
  ops: number;
  seconds: number;
  /** This process's CPU (user+system) over the job, µs. */
  driverCpuUs: number;
}

const OUR_MAX_RECV = 262144;
/** The one buffer every socket read lands in. */
const READ_BUFFER = 1 << 20;
const ISID = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, 0x00]);

interface Slot {
  itt: number;
  busy: boolean;
  write: boolean;
  len: number;
  /** Data-In bytes received (read) or Data-Out bytes sent (write). */
  moved: number;
}

export class BenchDriver {
  private readonly parser: PduParser;
  private readonly fo: FrameOptions = { headerDigest: false, dataDigest: false, crc32c, seal: pduSeal };
  private cmdSN = 1;
  private maxCmdSN = 1;
  private expStatSN = 0;
  private slots: Slot[] = [];
  private waiting: Pdu[] = [];
  private wake: (() => void) | null = null;
  private failure: Error | null = null;
  /** Target's MaxRecvDataSegmentLength, and the session's FirstBurstLength. */
  private targetMaxRecv = 8192;
  private firstBurst = 65536;
  blockSize = 512;
  lunBytes = 0;
  // The running job.
  private job: Job | null = null;
  private wbuf = Buffer.alloc(0);
  private nextOffset = 0;
  private deadline = 0;
  private done = 0;
  private inFlight = 0;
  private finish: ((e?: Error) => void) | null = null;
  private corked = false;

  private constructor(
    private readonly sock: net.Socket,
    private readonly o: DriverOptions,
  ) {
    this.parser = new PduParser({
      onPdu: (p) => this.onPdu(p),
      onError: (e: PduParseError) => this.fail(new Error(`parse: ${e.message}`)),
      crc32c,
      pduCheck,
      maxDataSegmentLength: OUR_MAX_RECV,
      // Reads land in one reused buffer (connect()'s onread): the parser keeps nothing across pushes, and a
      // segment split across reads is assembled by one copy, not by allocating every read and concatenating.
      retainChunks: false,
    });
    sock.setNoDelay(true);
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('connection closed')));
  }

  /** Connect, log in (digests as asked) and read the LU's capacity. */
  static async connect(o: DriverOptions): Promise<BenchDriver> {
    const box: { d?: BenchDriver } = {}; // reads begin after connect, once the driver exists
    const sock = net.connect({
      host: o.host,
      port: o.port,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER),
        callback: (n: number, buf: Uint8Array) => {
          box.d!.received(buf as Buffer, n);
          return true; // keep reading
        },
      },
    });
    await new Promise<void>((res, rej) => {
      sock.once('connect', res);
      sock.once('error', rej);
    });
    const d = (box.d = new BenchDriver(sock, o));
    await d.login();
    await d.readCapacity();
    return d;
  }

  private received(buf: Buffer, n: number): void {
    this.corkTurn();
    this.parser.push(buf.subarray(0, n));
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.wake?.();
    this.finish?.(e);
  }

  /** Uncork once this turn's PDUs are queued: one writev per turn. */
  private corkTurn(): void {
    if (this.corked) return;
    this.corked = true;
    this.sock.cork();
    setImmediate(() => {
      this.corked = false;
      this.sock.uncork();
    });
  }

  private send(bhs: Buffer, data: Buffer | null): void {
    this.corkTurn();
    for (const b of frame(bhs, data, this.fo)) this.sock.write(b);
  }

  private async next(): Promise<Pdu> {
    for (;;) {
      if (this.failure) throw this.failure;
      const p = this.waiting.shift();
      if (p) return p;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  private async login(): Promise<void> {
    const want = this.o.digests ? 'CRC32C' : 'None';
    let keys: Array<[string, string]> = [
      ['InitiatorName', this.o.initiatorName ?? 'iqn.2026-11.io.nodetgt.bench:driver'],
      ['SessionType', 'Normal'],
      ['TargetName', this.o.targetName],
      ['HeaderDigest', want],
      ['DataDigest', want],
      ['InitialR2T', 'No'],
      ['ImmediateData', 'Yes'],
      ['MaxRecvDataSegmentLength', String(OUR_MAX_RECV)],
      ['MaxBurstLength', '1048576'],
      ['FirstBurstLength', '262144'],
      ['MaxOutstandingR2T', '1'],
      ['ErrorRecoveryLevel', '0'],
    ];
    const got = new Map<string, string>();
    for (let round = 0; round < 6; round++) {
      this.send(
        encodeLoginRequest({
          transit: true,
          continue: false,
          csg: 1,
          nsg: 3,
          isid: ISID,
          tsih: 0,
          itt: 0x1000, // the same ITT throughout the login (RFC 7143 11.12.6)
          cid: 0,
          cmdSN: this.cmdSN,
          expStatSN: this.expStatSN,
        }),
        keys.length ? encodeTextData(keys) : null,
      );
      const p = await this.next();
      if (p.opcode !== Opcode.LoginResponse) throw new Error(`opcode ${p.opcode} during login`);
      const r = decodeLoginResponse(p);
      if (r.statusClass !== 0) throw new Error(`login refused: ${r.statusClass}/${r.statusDetail}`);
      for (const [k, v] of parseTextData(p.data).pairs) got.set(k, v);
      this.expStatSN = r.statSN + 1;
      this.maxCmdSN = r.maxCmdSN;
      if (r.transit && r.nsg === 3) {
        this.cmdSN = r.expCmdSN;
        break;
      }
      keys = []; // the target wants another round: we have nothing new to say
    }
    const hd = got.get('HeaderDigest') ?? 'None';
    const dd = got.get('DataDigest') ?? 'None';
    if (hd !== want || dd !== want) throw new Error(`asked for digests ${want}, got ${hd}/${dd}`);
    this.targetMaxRecv = Number(got.get('MaxRecvDataSegmentLength') ?? '8192');
    this.firstBurst = Number(got.get('FirstBurstLength') ?? '65536');
    if (got.get('ImmediateData') === 'No') this.firstBurst = 0;
    this.fo.headerDigest = this.parser.headerDigest = this.o.digests;
    this.fo.dataDigest = this.parser.dataDigest = this.o.digests;
  }

  /** READ CAPACITY (10): block size and LU size, synchronously through next(). */
  private async readCapacity(): Promise<void> {
    // The first command after login may meet a unit attention (power on, reset): ask again.
    for (let attempt = 0; ; attempt++) {
      const data = await this.readCapacityOnce(0x2000 + attempt);
      if (data) {
        this.blockSize = data.readUInt32BE(4);
        this.lunBytes = (data.readUInt32BE(0) + 1) * this.blockSize;
        return;
      }
      if (attempt >= 3) throw new Error('READ CAPACITY failed 4 times (CHECK CONDITION)');
    }
  }

  /** Its 8 bytes, or null on CHECK CONDITION. */
  private async readCapacityOnce(itt: number): Promise<Buffer | null> {
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x25;
    this.send(this.command(itt, cdb, 8, true, false), null);
    let data: Buffer | null = null;
    for (;;) {
      const p = await this.next();
      if (p.opcode === Opcode.DataIn && p.itt === itt) {
        data = p.data;
        if (p.bhs[1]! & 0x01) break;
      } else if (p.opcode === Opcode.ScsiResponse && p.itt === itt) {
        this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        this.maxCmdSN = p.bhs.readUInt32BE(32);
        if (p.bhs[3] === 0x02) return null;
        if (p.bhs[3] !== 0) throw new Error(`READ CAPACITY status ${p.bhs[3]}`);
        break;
      } else if (p.opcode === Opcode.NopIn) continue;
      else throw new Error(`unexpected opcode ${p.opcode} awaiting READ CAPACITY`);
    }
    if (!data || data.length < 8) throw new Error('READ CAPACITY returned no data');
    return data;
  }

  private command(itt: number, cdb: Buffer, edtl: number, read: boolean, write: boolean): Buffer {
    const bhs = encodeScsiCommand({
      itt,
      cdb,
      lun: lunField(this.o.lun),
      read,
      write,
      expectedDataTransferLength: edtl,
      cmdSN: this.cmdSN,
      expStatSN: this.expStatSN,
    });
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    return bhs;
  }

  private onPdu(p: Pdu): void {
    if (!this.job) {
      // Kept past this read: copy out of the reused read buffer.
      this.waiting.push({
        ...p,
        bhs: Buffer.from(p.bhs),
        ahs: p.ahs && Buffer.from(p.ahs),
        data: Buffer.from(p.data),
      });
      this.wake?.();
      return;
    }
    const op = p.opcode;
    if (op === Opcode.DataIn) {
      const s = this.slots[p.itt];
      if (!s || !s.busy) return this.fail(new Error(`Data-In for idle ITT ${p.itt}`));
      s.moved += p.data.length;
      if (p.bhs[1]! & 0x01) this.completed(s, p.bhs[3]!, p.bhs);
    } else if (op === Opcode.ScsiResponse) {
      const s = this.slots[p.itt];
      if (!s || !s.busy) return this.fail(new Error(`response for idle ITT ${p.itt}`));
      this.completed(s, p.bhs[3]!, p.bhs);
    } else if (op === Opcode.R2T) {
      const s = this.slots[p.itt];
      if (!s || !s.busy) return this.fail(new Error(`R2T for idle ITT ${p.itt}`));
      this.answerR2T(p);
    } else if (op === Opcode.NopIn) {
      this.maxCmdSN = p.bhs.readUInt32BE(32);
    } else {
      this.fail(new Error(`unexpected opcode 0x${op.toString(16)} during the job`));
    }
  }

  private answerR2T(p: Pdu): void {
    const b = p.bhs;
    const ttt = b.readUInt32BE(20);
    const offset = b.readUInt32BE(40);
    const want = b.readUInt32BE(44);
    let dataSN = 0;
    for (let at = 0; at < want; at += this.targetMaxRecv) {
      const n = Math.min(this.targetMaxRecv, want - at);
      const bhs = encodeDataOut({
        final: at + n >= want,
        lun: lunField(this.o.lun),
        itt: p.itt,
        ttt,
        expStatSN: this.expStatSN,
        dataSN: dataSN++,
        bufferOffset: offset + at,
      });
      this.send(bhs, this.wbuf.subarray(offset + at, offset + at + n));
    }
    this.slots[p.itt]!.moved += want;
  }

  private completed(s: Slot, status: number, bhs: Buffer): void {
    this.expStatSN = (bhs.readUInt32BE(24) + 1) >>> 0;
    this.maxCmdSN = bhs.readUInt32BE(32);
    if (status !== 0) return this.fail(new Error(`SCSI status 0x${status.toString(16)}`));
    if (s.moved !== s.len)
      return this.fail(new Error(`ITT ${s.itt}: ${s.moved} of ${s.len} bytes ${s.write ? 'sent' : 'read'}`));
    s.busy = false;
    this.inFlight--;
    this.done++;
    this.issueAll();
  }

  /** Start commands on idle slots while the deadline and the CmdSN window allow. */
  private issueAll(): void {
    const job = this.job!;
    const now = performance.now();
    if (now < this.deadline) {
      for (const s of this.slots) {
        if (s.busy) continue;
        if (((this.maxCmdSN - this.cmdSN) | 0) < 0) break; // window closed: a response reopens it
        this.issue(s, job);
      }
    }
    if (this.inFlight === 0) this.finish?.();
  }

  private issue(s: Slot, job: Job): void {
    const off = this.nextOffset;
    this.nextOffset = (off + job.step) % (this.lunBytes - job.bs + 1);
    this.nextOffset -= this.nextOffset % job.bs; // keep it aligned
    const lba = off / this.blockSize;
    const blocks = job.bs / this.blockSize;
    const cdb = Buffer.alloc(16);
    cdb[0] = job.write ? 0x2a : 0x28; // WRITE(10) / READ(10)
    cdb.writeUInt32BE(lba, 2);
    cdb.writeUInt16BE(blocks, 7);
    s.busy = true;
    s.write = job.write;
    s.len = job.bs;
    s.moved = 0;
    this.inFlight++;
    const bhs = this.command(s.itt, cdb, job.bs, !job.write, job.write);
    if (job.write) {
      const imm = Math.min(job.bs, this.firstBurst, this.targetMaxRecv);
      s.moved = imm;
      this.send(bhs, imm > 0 ? this.wbuf.subarray(0, imm) : null);
    } else this.send(bhs, null);
  }

  /** Run one job: keep `qd` commands in flight for `secs`, then wait for the last ones. */
  async run(job: Job): Promise<JobResult> {
    if (this.failure) throw this.failure;
    if (job.bs % this.blockSize !== 0) throw new Error(`bs ${job.bs} is not a multiple of ${this.blockSize}`);
    this.job = job;
    this.wbuf = Buffer.alloc(job.bs, 0x5a);
    this.slots = Array.from({ length: job.qd }, (_, itt) => ({
      itt,
      busy: false,
      write: false,
      len: 0,
      moved: 0,
    }));
    this.done = 0;
    this.inFlight = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    this.deadline = t0 + job.secs * 1000;
    const ended = new Promise<void>((res, rej) => (this.finish = (e) => (e ? rej(e) : res())));
    this.corkTurn();
    this.issueAll();
    try {
      await ended;
    } finally {
      this.finish = null;
      this.job = null;
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { ops: this.done, seconds, driverCpuUs: cpu.user + cpu.system };
  }

  /** Log out and close. */
  async close(): Promise<void> {
    if (!this.failure) {
      this.send(
        encodeLogoutRequest({
          immediate: true,
          reasonCode: 0,
          itt: 0x3000,
          cmdSN: this.cmdSN,
          expStatSN: this.expStatSN,
        }),
        null,
      );
      await Promise.race([this.next().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    }
    this.sock.destroy();
  }
}
