/**
 * The test initiator's own checks, against a scripted fake target that sends what nodetgt should never send:
 * a reply with another ITT, a DataSN gap, a hole in the buffer offsets, data beyond EDTL, a skipped StatSN,
 * a late reply for a command given up on, a duplicate status, an ExpCmdSN ahead of the commands sent, an R2T
 * beyond EDTL. Each must fail the awaiting call with a ProtocolViolation that says what went wrong; replies
 * out of order for two outstanding commands must not.
 */
import test from 'ava';
import * as net from 'node:net';
import { TestInitiator, ProtocolViolation } from './helpers/initiator';
import { PduParser } from '../src/pdu/parser';
import type { Pdu } from '../src/pdu/pdu';
import {
  encodeDataIn,
  encodeLoginResponse,
  encodeR2T,
  encodeScsiResponse,
  frame,
} from '../src/pdu/serializer';
import { Opcode } from '../src/pdu/opcodes';
import { encodeTextData } from '../src/login/text';

/** What a script sees of the fake target's connection. */
interface Conn {
  statSN: number;
  expCmdSN: number;
  send(bhs: Buffer, data?: Buffer): void;
  /** ExpCmdSN/MaxCmdSN as a correct target would send them now. */
  readonly win: { expCmdSN: number; maxCmdSN: number };
}

/** A target that logs anyone in and hands every later PDU to the script. */
async function fakeTarget(
  script: (p: Pdu, c: Conn) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    const c: Conn = {
      statSN: 100,
      expCmdSN: 1,
      send: (bhs, data) =>
        s.write(Buffer.concat(frame(bhs, data ?? null, { headerDigest: false, dataDigest: false }))),
      get win() {
        return { expCmdSN: c.expCmdSN, maxCmdSN: (c.expCmdSN + 31) >>> 0 };
      },
    };
    const parser = new PduParser({
      onPdu: (p) => {
        if (!p.immediate && p.opcode !== Opcode.DataOut) c.expCmdSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        if (p.opcode !== Opcode.LoginRequest) return script(p, c);
        c.expCmdSN = p.bhs.readUInt32BE(24);
        c.send(
          encodeLoginResponse({
            transit: true,
            continue: false,
            csg: 1,
            nsg: 3,
            isid: p.bhs.subarray(8, 14),
            tsih: 1,
            itt: p.itt,
            statSN: c.statSN++,
            ...c.win,
            statusClass: 0,
            statusDetail: 0,
          }),
          encodeTextData([['MaxRecvDataSegmentLength', '262144']]),
        );
      },
      onError: () => s.destroy(),
      maxDataSegmentLength: 1 << 20,
    });
    s.on('data', (d: Buffer) => parser.push(d));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

async function withFake(
  script: (p: Pdu, c: Conn) => void,
  run: (ini: TestInitiator) => Promise<void>,
): Promise<void> {
  const fake = await fakeTarget(script);
  const ini = await TestInitiator.connect(fake.port);
  try {
    if ((await ini.login({ targetName: 'iqn.2026-11.io.nodetgt.test:fake' })).status !== 0)
      throw new Error('login');
    await run(ini);
  } finally {
    ini.socket.destroy();
    await fake.close();
  }
}

const READ = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
const WRITE = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);

function dataIn(c: Conn, itt: number, dataSN: number, offset: number, data: Buffer, status = false): void {
  c.send(
    encodeDataIn({
      final: status,
      statusPresent: status,
      status: 0,
      itt,
      statSN: status ? c.statSN++ : 0,
      ...c.win,
      dataSN,
      bufferOffset: offset,
    }),
    data,
  );
}

function response(c: Conn, itt: number, expDataSN = 0, statSN = c.statSN++): void {
  c.send(encodeScsiResponse({ status: 0, itt, statSN, ...c.win, expDataSN }));
}

const violation = (message: RegExp) => ({ instanceOf: ProtocolViolation, message });

test('a Data-In with another ITT fails the command', async (t) => {
  await withFake(
    (p, c) => dataIn(c, p.itt + 1, 0, 0, Buffer.alloc(4096), true),
    async (ini) => {
      const e = await t.throwsAsync(
        ini.scsi(READ, { edtl: 4096, read: true }),
        violation(/names no outstanding task/),
      );
      t.log(e?.message);
    },
  );
});

test('a DataSN gap fails the command', async (t) => {
  await withFake(
    (p, c) => {
      dataIn(c, p.itt, 0, 0, Buffer.alloc(2048));
      dataIn(c, p.itt, 2, 2048, Buffer.alloc(2048), true);
    },
    async (ini) => {
      const e = await t.throwsAsync(
        ini.scsi(READ, { edtl: 4096, read: true }),
        violation(/expected DataSN 1/),
      );
      t.log(e?.message);
    },
  );
});

test('a hole in the Data-In buffer offsets fails the command', async (t) => {
  await withFake(
    (p, c) => {
      dataIn(c, p.itt, 0, 0, Buffer.alloc(1024));
      dataIn(c, p.itt, 1, 2048, Buffer.alloc(1024), true);
    },
    async (ini) => {
      await t.throwsAsync(
        ini.scsi(READ, { edtl: 4096, read: true }),
        violation(/offset 2048, expected 1024/),
      );
    },
  );
});

test('Data-In beyond EDTL fails the command', async (t) => {
  await withFake(
    (p, c) => dataIn(c, p.itt, 0, 0, Buffer.alloc(8192), true),
    async (ini) => {
      await t.throwsAsync(ini.scsi(READ, { edtl: 4096, read: true }), violation(/beyond EDTL 4096/));
    },
  );
});

test('a skipped StatSN fails the command', async (t) => {
  await withFake(
    (p, c) => response(c, p.itt, 0, c.statSN++ + 1),
    async (ini) => {
      await t.throwsAsync(ini.scsi(Buffer.alloc(16), { edtl: 0 }), violation(/StatSN 102, expected 101/));
    },
  );
});

test('an ExpCmdSN past the commands sent fails the command', async (t) => {
  await withFake(
    (p, c) =>
      c.send(
        encodeScsiResponse({
          status: 0,
          itt: p.itt,
          statSN: c.statSN++,
          expCmdSN: c.expCmdSN + 5,
          maxCmdSN: c.expCmdSN + 40,
        }),
      ),
    async (ini) => {
      await t.throwsAsync(ini.scsi(Buffer.alloc(16), { edtl: 0 }), violation(/past the next CmdSN/));
    },
  );
});

test('an R2T beyond EDTL fails the write', async (t) => {
  await withFake(
    (p, c) => {
      if (p.opcode !== Opcode.ScsiCommand) return;
      c.send(
        encodeR2T({
          itt: p.itt,
          ttt: 7,
          statSN: c.statSN,
          ...c.win,
          r2tSN: 0,
          bufferOffset: 0,
          desiredDataTransferLength: 8192,
        }),
      );
    },
    async (ini) => {
      await t.throwsAsync(
        ini.scsi(WRITE, { edtl: 4096, write: true, data: Buffer.alloc(4096), immediate: 0 }),
        violation(/beyond EDTL 4096/),
      );
    },
  );
});

test('a late reply for a command given up on is not taken for the next command', async (t) => {
  let first: number | null = null;
  await withFake(
    (p, c) => {
      if (first === null) {
        first = p.itt; // no answer, until the next command comes
        return;
      }
      response(c, first);
      response(c, p.itt);
    },
    async (ini) => {
      await t.throwsAsync(ini.scsi(Buffer.alloc(16), { edtl: 0, timeoutMs: 300 }), { message: /no answer/ });
      const e = await t.throwsAsync(
        ini.scsi(Buffer.alloc(16), { edtl: 0 }),
        violation(/timed out .*late or duplicate/),
      );
      t.log(e?.message);
    },
  );
});

test('a duplicate status is reported by the next call, or by close()', async (t) => {
  const dup = (p: Pdu, c: Conn) => {
    if (p.opcode !== Opcode.ScsiCommand) return;
    response(c, p.itt);
    response(c, p.itt);
  };
  await withFake(dup, async (ini) => {
    t.is((await ini.scsi(Buffer.alloc(16), { edtl: 0 })).status, 0);
    await new Promise((r) => setTimeout(r, 100));
    await t.throwsAsync(ini.nop(), violation(/late or duplicate/));
  });
  await withFake(dup, async (ini) => {
    t.is((await ini.scsi(Buffer.alloc(16), { edtl: 0 })).status, 0);
    await new Promise((r) => setTimeout(r, 100));
    t.throws(() => ini.close(), violation(/late or duplicate/));
  });
});

test('two commands outstanding, answered in reverse order: each gets its own data', async (t) => {
  const held: Pdu[] = [];
  await withFake(
    (p, c) => {
      held.push(p);
      if (held.length < 2) return;
      for (const [i, q] of [...held].reverse().entries())
        dataIn(c, q.itt, 0, 0, Buffer.alloc(4096, 0xb0 + i), true);
    },
    async (ini) => {
      const a = ini.scsi(READ, { edtl: 4096, read: true });
      const b = ini.scsi(READ, { edtl: 4096, read: true });
      const [ra, rb] = await Promise.all([a, b]);
      t.deepEqual(ra.data, Buffer.alloc(4096, 0xb1));
      t.deepEqual(rb.data, Buffer.alloc(4096, 0xb0));
      t.is(ini.outstanding, 0);
    },
  );
});
