/**
 * The SCSI data path through our own initiator: bad input of issue 3 (out-of-range LBA, EDTL mismatch,
 * Data-Out for an unknown task, too much unsolicited data, CmdSN outside the window) and the zero-copy claim.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { encodeDataOut, encodeScsiCommand } from '../src/pdu/serializer';
import { decodeReject } from '../src/pdu/pdu';
import { readCounters } from '../src/metrics/counters';
import { cdb10 } from './scsi-helpers';
import { LARGE_MIN_READ, LARGE_SLAB } from '../src/util/slab-pool';

let tt: TestTarget;
let healthy: TestInitiator;
const BLOCKS = (64 * 1024 * 1024) / 512;

test.before(async () => {
  tt = await startTestTarget({ workers: 2 });
  healthy = await TestInitiator.connect(tt.port);
  if ((await healthy.login({ targetName: TEST_TARGET })).status !== 0) throw new Error('login failed');
});
test.after.always(async () => {
  healthy?.close();
  await tt?.close();
});

const READ10 = 0x28;
const WRITE10 = 0x2a;
const total = () => readCounters(tt.target.counters).total;

async function session(): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(tt.port);
  const r = await ini.login({ targetName: TEST_TARGET });
  if (r.status !== 0) throw new Error(`login ${r.status}`);
  return ini;
}

async function healthyRead(t: import('ava').ExecutionContext): Promise<void> {
  const r = await healthy.scsi(cdb10(READ10, 0, 1), { edtl: 512, read: true });
  t.is(r.status, 0, 'the other session still reads');
  t.is(r.data.length, 512);
}

test.serial('READ beyond the last LBA: CHECK CONDITION, ILLEGAL REQUEST, LBA OUT OF RANGE', async (t) => {
  const ini = await session();
  const r = await ini.scsi(cdb10(READ10, BLOCKS - 1, 2), { edtl: 1024, read: true });
  t.is(r.status, 0x02);
  t.truthy(r.sense);
  t.is(r.sense![2] & 0x0f, 0x05);
  t.is(r.sense![12], 0x21);
  t.is(r.sense![13], 0x00);
  t.is(r.data.length, 0, 'no data for a refused read');
  const ok = await ini.scsi(cdb10(READ10, BLOCKS - 1, 1), { edtl: 512, read: true });
  t.is(ok.status, 0, 'the last block itself reads fine');
  await healthyRead(t);
  ini.close();
});

test.serial('transfer length disagreeing with EDTL: GOOD with residual overflow / underflow', async (t) => {
  const ini = await session();
  const over = await ini.scsi(cdb10(READ10, 0, 2), { edtl: 512, read: true });
  t.is(over.status, 0);
  t.is(over.data.length, 512, 'only EDTL bytes are sent');
  // The status comes with the last Data-In (phase collapse): F, O and S set, nothing else (RFC 7143 11.7).
  t.is(over.response.opcode, 0x25, 'status in the final Data-In');
  t.is(over.flags, 0x80 | 0x04 | 0x01, 'F|O|S');
  t.is(over.residual, 512);
  const under = await ini.scsi(cdb10(READ10, 0, 1), { edtl: 4096, read: true });
  t.is(under.status, 0);
  t.is(under.data.length, 512);
  t.is(under.response.opcode, 0x25, 'status in the final Data-In');
  t.is(under.flags, 0x80 | 0x02 | 0x01, 'F|U|S');
  t.is(under.residual, 4096 - 512);
  // A write whose EDTL covers one block of a two-block WRITE(10) writes only that block (overflow).
  const a = Buffer.alloc(1024, 0x61);
  t.is((await ini.scsi(cdb10(WRITE10, 10, 2), { edtl: 1024, write: true, data: a })).status, 0);
  const w = await ini.scsi(cdb10(WRITE10, 10, 2), { edtl: 512, write: true, data: Buffer.alloc(512, 0x62) });
  t.is(w.status, 0);
  // SCSI Response: F set, O (residual overflow) set; no bidirectional bits, no underflow (RFC 7143 11.4).
  t.is(w.response.opcode, 0x21, 'SCSI Response');
  t.is(w.flags, 0x80 | 0x04, 'F|O on the write');
  t.is(w.residual, 512);
  t.is(w.response.bhs.readUInt32BE(40), 0, 'no bidirectional read residual');
  const back = await ini.scsi(cdb10(READ10, 10, 2), { edtl: 1024, read: true });
  t.deepEqual(back.data, Buffer.concat([Buffer.alloc(512, 0x62), Buffer.alloc(512, 0x61)]));
  ini.close();
});

test.serial(
  'Data-Out for an unknown task gets Reject (invalid PDU field); the session goes on',
  async (t) => {
    const ini = await session();
    ini.send(
      encodeDataOut({
        final: true,
        itt: 0x0badf00d,
        ttt: 1234,
        expStatSN: ini.expStatSN,
        dataSN: 0,
        bufferOffset: 0,
      }),
      Buffer.alloc(512),
    );
    const p = await ini.next();
    t.is(p?.opcode, 0x3f);
    t.is(decodeReject(p!).reason, 0x09);
    const r = await ini.scsi(cdb10(READ10, 0, 1), { edtl: 512, read: true });
    t.is(r.status, 0);
    await healthyRead(t);
    ini.close();
  },
);

test.serial(
  'more unsolicited data than FirstBurstLength: Reject (protocol error), connection dropped, others fine',
  async (t) => {
    const ini = await session();
    const before = total().instSsnFormatErrors;
    const firstBurst = 262144;
    const edtl = firstBurst * 2;
    const itt = 4242;
    ini.send(
      encodeScsiCommand({
        final: false,
        write: true,
        attr: 1,
        itt,
        expectedDataTransferLength: edtl,
        cmdSN: ini.cmdSN++,
        expStatSN: ini.expStatSN,
        cdb: cdb10(WRITE10, 100, edtl / 512),
      }),
    );
    // An unsolicited burst that runs 512 bytes past FirstBurstLength (each PDU within MaxRecvDataSegmentLength).
    ini.send(
      encodeDataOut({
        final: false,
        itt,
        ttt: 0xffffffff,
        expStatSN: ini.expStatSN,
        dataSN: 0,
        bufferOffset: 0,
      }),
      Buffer.alloc(firstBurst),
    );
    ini.send(
      encodeDataOut({
        final: true,
        itt,
        ttt: 0xffffffff,
        expStatSN: ini.expStatSN,
        dataSN: 1,
        bufferOffset: firstBurst,
      }),
      Buffer.alloc(512),
    );
    const p = await ini.next();
    t.is(p?.opcode, 0x3f);
    t.is(decodeReject(p!).reason, 0x04);
    await ini.closedPromise;
    t.is(total().instSsnFormatErrors, before + 1);
    await healthyRead(t);
  },
);

test.serial('a CmdSN outside the window is silently ignored; the next in-window command works', async (t) => {
  const ini = await session();
  const tur = Buffer.alloc(16);
  for (const delta of [-1, 100000]) {
    ini.send(
      encodeScsiCommand({
        final: true,
        attr: 1,
        itt: 777 + delta,
        expectedDataTransferLength: 0,
        cmdSN: (ini.cmdSN + delta) >>> 0,
        expStatSN: ini.expStatSN,
        cdb: tur,
      }),
    );
    t.is(await ini.next(1000), null, `no answer for CmdSN ExpCmdSN${delta > 0 ? '+' : ''}${delta}`);
  }
  const itt = ini.itt;
  const ok = await ini.scsi(tur, { edtl: 0 });
  t.is(ok.response.itt, itt, 'the first answer on the connection is for the in-window command');
  t.is(ok.status, 0);
  await healthyRead(t);
  ini.close();
});

test.serial(
  'zero-copy: large writes reach io_uring from the receive buffers, reads leave from the I/O buffer',
  async (t) => {
    const ini = await session();
    const data = randomBytes(16 * 1024 * 1024);
    const chunk = 1024 * 1024;
    const write = async (off: number) => {
      const r = await ini.scsi(cdb10(WRITE10, 4096 + off / 512, chunk / 512), {
        edtl: chunk,
        write: true,
        data: data.subarray(off, off + chunk),
      });
      t.is(r.status, 0);
    };
    // The first write of a connection reads into small slabs (a 256 KiB segment spans several and is copied)
    // until a read fills what it was offered or brings more than a small slab takes: it is the warm-up, not
    // counted.
    await write(0);
    const before = total();
    for (let off = chunk; off < data.length; off += chunk) await write(off);
    const after = total();
    const received = after.ssnRxDataOctets - before.ssnRxDataOctets;
    const copied = after.pduDataCopiedBytes - before.pduDataCopiedBytes;
    // Only a segment that straddles two receive slabs is assembled by copying. A large slab is left with at
    // least LARGE_MIN_READ unused, so at most one segment straddles per (LARGE_SLAB - LARGE_MIN_READ) bytes
    // read, plus the one slab the warm-up left part-used. Copying everything would be received bytes.
    const segment = ini.params.targetMaxRecv;
    const straddles = Math.ceil(received / (LARGE_SLAB - LARGE_MIN_READ)) + 1;
    const bound = straddles * segment;
    t.log(
      `data received ${received} B, copied by the parser ${copied} B (${((100 * copied) / received).toFixed(2)}%); ` +
        `bound ${straddles} straddling segments of ${segment} B = ${bound} B (${((100 * bound) / received).toFixed(2)}%)`,
    );
    t.true(received >= data.length - chunk);
    t.true(copied <= bound, `copied ${copied} of ${received}, more than ${bound}`);
    const back = await ini.scsi(cdb10(READ10, 4096, 2048), { edtl: 1024 * 1024, read: true });
    t.deepEqual(back.data, data.subarray(0, 1024 * 1024));
    // And the bytes are really on the backing file.
    const fd = fs.openSync(path.join(tt.dir, 'lun0.img'), 'r');
    const onDisk = Buffer.alloc(data.length);
    fs.readSync(fd, onDisk, 0, data.length, 4096 * 512);
    fs.closeSync(fd);
    t.true(onDisk.equals(data));
    ini.close();
  },
);

// The test initiator rejects a Data-In sequence longer than MaxBurstLength (1 MiB here), so a READ of 2 MiB must
// come in two sequences, each ended by the F bit.
test.serial(
  'a READ larger than MaxBurstLength comes in Data-In sequences of at most MaxBurstLength (RFC 7143 13.14)',
  async (t) => {
    const ini = await session();
    try {
      const r = await ini.scsi(cdb10(READ10, 0, 4096), { edtl: 2 * 1024 * 1024, read: true });
      t.is(r.status, 0);
      t.is(r.data.length, 2 * 1024 * 1024);
    } finally {
      ini.socket.destroy();
    }
  },
);
