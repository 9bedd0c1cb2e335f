/**
 * A small iSCSI initiator for tests: what no real tool covers (bad input, protocol corner cases, MC/S).
 * Built on our own PDU codec (its byte-level correctness is tested separately).
 */
import * as net from 'node:net';
import { PduParser } from '../../src/pdu/parser';
import { type Pdu, decodeLoginResponse } from '../../src/pdu/pdu';
import {
  frame,
  encodeLoginRequest,
  encodeScsiCommand,
  encodeLogoutRequest,
  encodeTextRequest,
  encodeNopOut,
  encodeDataOut,
} from '../../src/pdu/serializer';
import { Opcode } from '../../src/pdu/opcodes';
import { encodeTextData, parseTextData } from '../../src/login/text';
import { crc32cRef } from '../../src/pdu/crc32c-ref';

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
}

export interface LoginResult {
  isid: Buffer;
  status: number;
  tsih: number;
  keys: Map<string, string>;
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

export class TestInitiator {
  private readonly queue: Pdu[] = [];
  private waiters: Array<(p: Pdu | null) => void> = [];
  private readonly parser: PduParser;
  closed = false;
  readonly closedPromise: Promise<void>;
  cmdSN = 1;
  expStatSN = 0;
  itt = 1;
  headerDigest = false;
  dataDigest = false;

  private constructor(readonly socket: net.Socket) {
    this.parser = new PduParser({
      onPdu: (p) => {
        const w = this.waiters.shift();
        if (w) w(p);
        else this.queue.push(p);
      },
      onError: () => socket.destroy(),
      crc32c: crc32cRef,
      maxDataSegmentLength: 16 * 1024 * 1024,
    });
    socket.on('data', (d: Buffer) => this.parser.push(d));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        for (const w of this.waiters) w(null);
        this.waiters = [];
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

  sendRaw(buf: Buffer): void {
    this.socket.write(buf);
  }

  send(bhs: Buffer, data: Buffer | null = null): void {
    const iov = frame(bhs, data, {
      headerDigest: this.headerDigest,
      dataDigest: this.dataDigest,
      crc32c: crc32cRef,
    });
    this.socket.write(Buffer.concat(iov));
  }

  /**
   * The next PDU from the target, or null if the connection closed first or the timeout passed. The default
   * only bounds a wait for an answer that should come (generous: a loaded machine is slow, and the wait ends
   * as soon as the answer is there); a test expecting no answer passes its own, shorter timeout.
   */
  next(timeoutMs = 15_000): Promise<Pdu | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(null);
      }, timeoutMs);
      const done = (p: Pdu | null) => {
        clearTimeout(t);
        resolve(p);
      };
      this.waiters.push(done);
    });
  }

  async login(o: LoginOptions = {}): Promise<LoginResult> {
    const isid = o.isid ?? nextIsid();
    const itt = this.itt++;
    let keys: Array<[string, string]> = [['InitiatorName', o.initiatorName ?? TEST_INITIATOR]];
    keys.push(['SessionType', o.sessionType ?? 'Normal']);
    if ((o.sessionType ?? 'Normal') === 'Normal') keys.push(['TargetName', o.targetName ?? '']);
    let csg = 1;
    if (o.security) {
      csg = 0;
      keys.push(['AuthMethod', 'None']);
    } else {
      keys.push(...(o.keys ?? defaultOperationalKeys()));
    }
    const got = new Map<string, string>();
    for (let round = 0; round < 8; round++) {
      const nsg = csg === 0 ? 1 : 3;
      this.send(
        encodeLoginRequest({
          transit: true,
          continue: false,
          csg,
          nsg,
          isid,
          tsih: o.tsih ?? 0,
          itt,
          cid: o.cid ?? 0,
          cmdSN: this.cmdSN,
          expStatSN: this.expStatSN,
        }),
        keys.length ? encodeTextData(keys) : null,
      );
      const p = await this.next();
      if (!p) throw new Error('connection closed (or no answer within 5 s) during login');
      if (p.opcode !== Opcode.LoginResponse)
        throw new Error(`unexpected opcode 0x${p.opcode.toString(16)} in login`);
      const r = decodeLoginResponse(p);
      this.expStatSN = (r.statSN + 1) >>> 0;
      const parsed = parseTextData(p.data);
      const answers: Array<[string, string]> = [];
      for (const [k, v] of parsed.pairs) {
        // Keys the target proposes: answer with the same value (we accept what it offers).
        if (!got.has(k) && !keys.some(([kk]) => kk === k) && isProposal(k)) answers.push([k, v]);
        got.set(k, v);
      }
      const status = (r.statusClass << 8) | r.statusDetail;
      if (status !== 0) return { isid, status, tsih: 0, keys: got };
      if (r.transit && r.nsg === 3) {
        this.cmdSN = r.expCmdSN;
        this.headerDigest = got.get('HeaderDigest') === 'CRC32C';
        this.dataDigest = got.get('DataDigest') === 'CRC32C';
        this.parser.headerDigest = this.headerDigest;
        this.parser.dataDigest = this.dataDigest;
        return { isid, status, tsih: r.tsih, keys: got };
      }
      if (r.transit && r.nsg === 1) {
        csg = 1;
        keys = o.keys ?? defaultOperationalKeys();
      } else {
        keys = answers;
      }
    }
    throw new Error('login did not complete');
  }

  /** A SCSI command; collects Data-In and the status. Write data goes as immediate data + Data-Out on R2T. */
  async scsi(
    cdb: Buffer,
    o: { lun?: number; edtl: number; read?: boolean; write?: boolean; data?: Buffer; immediate?: number } = {
      edtl: 0,
    },
  ): Promise<{
    status: number;
    data: Buffer;
    sense: Buffer | null;
    response: Pdu;
    residual: number;
    flags: number;
  }> {
    const itt = this.itt++;
    const imm = o.data ? o.data.subarray(0, Math.min(o.immediate ?? 65536, o.data.length)) : null;
    const lunBuf = Buffer.alloc(8);
    lunBuf[1] = o.lun ?? 0;
    const lun = lunBuf.readBigUInt64BE(0);
    this.send(
      encodeScsiCommand({
        final: true,
        read: !!o.read,
        write: !!o.write,
        attr: 1,
        lun,
        itt,
        expectedDataTransferLength: o.edtl,
        cmdSN: this.cmdSN++,
        expStatSN: this.expStatSN,
        cdb,
      }),
      imm && imm.length ? imm : null,
    );
    const chunks: Buffer[] = [];
    for (;;) {
      const p = await this.next(30_000);
      if (!p)
        throw new Error(
          this.closed ? 'connection closed before the SCSI response' : 'no response to SCSI command in 30 s',
        );
      if (p.opcode === Opcode.DataIn) {
        chunks.push(Buffer.from(p.data));
        if (p.bhs[1] & 0x01) {
          this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
          return {
            status: p.bhs[3],
            data: Buffer.concat(chunks),
            sense: null,
            response: p,
            residual: p.bhs.readUInt32BE(44),
            flags: p.bhs[1],
          };
        }
      } else if (p.opcode === Opcode.R2T) {
        const ttt = p.bhs.readUInt32BE(20);
        const off = p.bhs.readUInt32BE(40);
        const len = p.bhs.readUInt32BE(44);
        const max = 262144;
        let sn = 0;
        for (let pos = off; pos < off + len; pos += max) {
          const end = Math.min(pos + max, off + len);
          this.send(
            encodeDataOut({
              final: end === off + len,
              lun,
              itt,
              ttt,
              expStatSN: this.expStatSN,
              dataSN: sn++,
              bufferOffset: pos,
            }),
            o.data!.subarray(pos, end),
          );
        }
      } else if (p.opcode === Opcode.ScsiResponse) {
        this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        const senseLen = p.data.length >= 2 ? p.data.readUInt16BE(0) : 0;
        return {
          status: p.bhs[3],
          data: Buffer.concat(chunks),
          sense: senseLen ? Buffer.from(p.data.subarray(2, 2 + senseLen)) : null,
          response: p,
          residual: p.bhs.readUInt32BE(44),
          flags: p.bhs[1],
        };
      } else {
        throw new Error(`unexpected opcode 0x${p.opcode.toString(16)} waiting for SCSI response`);
      }
    }
  }

  async text(pairs: Array<[string, string]>): Promise<Map<string, string[]>> {
    this.send(
      encodeTextRequest({
        final: true,
        itt: this.itt++,
        ttt: 0xffffffff,
        cmdSN: this.cmdSN++,
        expStatSN: this.expStatSN,
      }),
      encodeTextData(pairs),
    );
    const p = await this.next();
    if (!p || p.opcode !== Opcode.TextResponse) throw new Error('no text response');
    this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    const out = new Map<string, string[]>();
    for (const [k, v] of parseTextData(p.data, { allowDuplicates: true }).pairs)
      out.set(k, [...(out.get(k) ?? []), v]);
    return out;
  }

  async nop(data: Buffer | null = null): Promise<Pdu | null> {
    this.send(
      encodeNopOut({
        immediate: true,
        itt: this.itt++,
        ttt: 0xffffffff,
        cmdSN: this.cmdSN,
        expStatSN: this.expStatSN,
      }),
      data,
    );
    return this.next();
  }

  async logout(): Promise<Pdu | null> {
    this.send(
      encodeLogoutRequest({
        immediate: true,
        reasonCode: 0,
        itt: this.itt++,
        cmdSN: this.cmdSN,
        expStatSN: this.expStatSN,
      }),
    );
    return this.next();
  }

  close(): void {
    this.socket.destroy();
  }
}

function isProposal(k: string): boolean {
  return !['TargetPortalGroupTag', 'TargetAlias', 'TargetAddress', 'TargetName'].includes(k);
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
