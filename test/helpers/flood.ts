/** Idle TCP connections to a portal, and a login attempt that reports how it was refused. */
import * as net from 'node:net';
import { TestInitiator } from './initiator';
import { encodeLoginRequest, frame } from '../../src/pdu/serializer';
import { crc32cRef } from '../../src/pdu/crc32c-ref';
import { encodeTextData } from '../../src/login/text';

export interface IdleConnection {
  socket: net.Socket;
  /** True once the target closed it. */
  closed: boolean;
}

export function idleConnection(port: number, localAddress = '127.0.0.1'): Promise<IdleConnection> {
  return new Promise((resolve) => {
    const c: IdleConnection = {
      socket: net.connect({ port, host: '127.0.0.1', localAddress }),
      closed: false,
    };
    c.socket.on('error', () => undefined);
    c.socket.on('close', () => (c.closed = true));
    c.socket.once('connect', () => resolve(c));
    c.socket.once('close', () => resolve(c));
  });
}

export async function flood(port: number, n: number, localAddress?: string): Promise<IdleConnection[]> {
  const out: IdleConnection[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = Array.from({ length: Math.min(50, n - i) }, () => idleConnection(port, localAddress));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/** Login status, or 'closed' when the target closed the connection without answering. */
export async function tryLogin(
  port: number,
  targetName: string,
): Promise<{ result: number | 'closed'; ini: TestInitiator | null }> {
  let ini: TestInitiator;
  try {
    ini = await TestInitiator.connect(port);
  } catch {
    return { result: 'closed', ini: null };
  }
  try {
    const r = await ini.login({ targetName });
    if (r.status !== 0) ini.close();
    return { result: r.status, ini: r.status === 0 ? ini : null };
  } catch {
    ini.close();
    return { result: 'closed', ini: null };
  }
}

/** A first Login PDU that stays in the security stage (T=0): the login goes on, pending, on a worker. */
export function halfLogin(targetName: string, initiatorName: string): Buffer {
  const data = encodeTextData([
    ['InitiatorName', initiatorName],
    ['SessionType', 'Normal'],
    ['TargetName', targetName],
    ['AuthMethod', 'None'],
  ]);
  const bhs = encodeLoginRequest({
    transit: false,
    continue: false,
    csg: 0,
    nsg: 0,
    isid: Buffer.from([0x80, 0, 0, 0, 0, 7]),
    tsih: 0,
    itt: 1,
    cid: 0,
    cmdSN: 1,
    expStatSN: 0,
  });
  return Buffer.concat(frame(bhs, data, { headerDigest: false, dataDigest: false, crc32c: crc32cRef }));
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}
