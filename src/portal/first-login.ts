/**
 * The portal thread reads only the first Login Request of a connection: enough to route it to the worker
 * that owns its session (TSIH, or InitiatorName+ISID for reinstatement), never more.
 */
import type { Socket } from 'node:net';
import {
  BHS_LENGTH,
  bhsDataSegmentLength,
  bhsOpcode,
  bhsTotalAhsLength,
  decodeLoginRequest,
  type Pdu,
} from '../pdu/pdu';
import { Opcode } from '../pdu/opcodes';
import { encodeLoginResponse } from '../pdu/serializer';

/** A first login PDU larger than this is not a login: during login MaxRecvDataSegmentLength is 8192. */
const MAX_FIRST_PDU = BHS_LENGTH + 255 * 4 + 65536;

export interface FirstLogin {
  /** Every byte read from the socket so far (the first PDU and anything after it). */
  bytes: Buffer;
  initiatorName: string | null;
  isid: string;
  tsih: number;
  /** Date.now() when the portal began to wait for this PDU (the login timeout runs from there). */
  acceptedAt: number;
}

export class NotALoginError extends Error {}

/** The InitiatorName key of a login text segment, or null. */
export function findInitiatorName(data: Buffer): string | null {
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0, start);
    if (end < 0) end = data.length;
    const kv = data.toString('utf8', start, end);
    if (kv.startsWith('InitiatorName=')) return kv.slice('InitiatorName='.length);
    start = end + 1;
  }
  return null;
}

/** Length of the first PDU (BHS + AHS + padded data) if `buf` starts with a plausible Login Request. */
export function firstPduLength(buf: Buffer): number {
  const op = bhsOpcode(buf);
  if (op !== Opcode.LoginRequest) throw new NotALoginError(`first PDU has opcode 0x${op.toString(16)}`);
  const total = BHS_LENGTH + bhsTotalAhsLength(buf) + ((bhsDataSegmentLength(buf) + 3) & ~3);
  if (total > MAX_FIRST_PDU) throw new NotALoginError(`first login PDU too long (${total} bytes)`);
  return total;
}

export function readFirstLogin(socket: Socket, timeoutMs: number): Promise<FirstLogin> {
  const acceptedAt = Date.now();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const done = (err: Error | null, value?: FirstLogin) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onEnd);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      if (err) reject(err);
      else resolve(value!);
    };
    const onEnd = (e?: unknown) =>
      done(e instanceof Error ? e : new NotALoginError('connection closed before a complete login PDU'));
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      have += chunk.length;
      if (have < BHS_LENGTH) return;
      const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      chunks.length = 0;
      chunks.push(buf);
      let need: number;
      try {
        need = firstPduLength(buf);
      } catch (e) {
        done(e as Error);
        return;
      }
      if (have < need) return;
      // Stop reading before the hand-over: whatever is still in the kernel stays there for the worker.
      socket.pause();
      const dsl = bhsDataSegmentLength(buf);
      const dataStart = BHS_LENGTH + bhsTotalAhsLength(buf);
      done(null, {
        bytes: buf,
        initiatorName: findInitiatorName(buf.subarray(dataStart, dataStart + dsl)),
        isid: buf.toString('hex', 8, 14),
        tsih: buf.readUInt16BE(14),
        acceptedAt,
      });
    };
    const timer = setTimeout(() => done(new NotALoginError('no login PDU within the timeout')), timeoutMs);
    socket.on('data', onData);
    socket.once('error', onEnd);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

/** The final Login Response that refuses the login whose first PDU starts `bytes`, with `status`. */
export function loginRefusal(bytes: Buffer, status: number): Buffer {
  const bhs = bytes.subarray(0, BHS_LENGTH);
  const pdu: Pdu = {
    bhs,
    ahs: null,
    data: Buffer.alloc(0),
    opcode: Opcode.LoginRequest,
    immediate: true,
    final: false,
    itt: bhs.readUInt32BE(16),
    dataLength: 0,
  };
  const req = decodeLoginRequest(pdu);
  return encodeLoginResponse({
    transit: false,
    continue: false,
    csg: req.csg,
    nsg: 0,
    isid: req.isid,
    tsih: 0,
    itt: req.itt,
    statSN: req.expStatSN,
    expCmdSN: req.cmdSN,
    maxCmdSN: req.cmdSN,
    statusClass: status >> 8,
    statusDetail: status & 0xff,
  });
}
