/**
 * The cd LU (MMC) and removable media: the MMC command table, and the eject / PREVENT state seen by two
 * workers (two LogicalUnit objects over one LuShared memory, different lanes).
 */
import test from 'ava';
import { MemoryBackstore } from '../src/backstore/memory';
import { ScsiDispatcher } from '../src/scsi/dispatcher';
import { LogicalUnit, identityOf } from '../src/scsi/lu';
import { LuShared, allocateLuShared } from '../src/scsi/lu-shared';
import { generateIdentity } from '../src/backstore/prepare';
import { ILLEGAL, cdb10, fixture, good, sense } from './scsi-helpers';

const NOT_READY = 0x02;
const UNIT_ATTENTION = 0x06;
const BLOCKS = 64;
const A = 'iqn.a,i,0x000000000001|iqn.t';
const B = 'iqn.b,i,0x000000000002|iqn.t';

/** The image: block n is filled with byte n. */
function image(): Buffer {
  const b = Buffer.alloc(BLOCKS * 2048);
  for (let n = 0; n < BLOCKS; n++) b.fill(n, n * 2048, (n + 1) * 2048);
  return b;
}

/** One cd LU as two workers see it: each with its own LogicalUnit and dispatcher, one shared memory. */
async function twoWorkers(type: 'cd' | 'disk' = 'cd') {
  const mem = allocateLuShared();
  const id = identityOf('iqn.t', 0, generateIdentity(), type);
  const make = async (lane: number) => {
    const store = new MemoryBackstore({ sizeBytes: BLOCKS * 2048, blockSize: 2048 });
    await store.write(0, [image()], false);
    store.readOnly = type === 'cd';
    const lu = new LogicalUnit(store, id, { shared: new LuShared(mem, lane), type, removable: true });
    const disp = new ScsiDispatcher(new Map([[0, lu]]));
    const run = (cdb: number[] | Buffer, nexus: string) =>
      disp.execute({
        lun: 0,
        cdb: Buffer.isBuffer(cdb) ? cdb : Buffer.from(cdb),
        expectedLength: 0,
        readFlag: true,
        writeFlag: false,
        dataOut: [],
        nexus,
      });
    return { lu, disp, run };
  };
  return { w1: await make(1), w2: await make(2) };
}

const TUR = [0, 0, 0, 0, 0, 0];
const EJECT = [0x1b, 0, 0, 0, 0x02, 0];
const LOAD = [0x1b, 0, 0, 0, 0x03, 0];
const prevent = (on: number) => [0x1e, 0, 0, 0, on, 0];
const cdb = (...bytes: number[]) => Buffer.from(bytes);

function featureCodes(d: Buffer): number[] {
  const codes: number[] = [];
  for (let off = 8; off < d.length; off += 4 + d[off + 3]) codes.push(d.readUInt16BE(off));
  return codes;
}

test('INQUIRY of a cd LU: peripheral type 05h, RMB = 1, MMC-5 claimed, SPC VPD pages only', async (t) => {
  const { w1 } = await twoWorkers();
  const r = await w1.run([0x12, 0, 0, 0, 96, 0], A);
  good(t, r);
  t.is(r.dataIn![0], 0x05);
  t.is(r.dataIn![1], 0x80);
  t.is(r.dataIn!.toString('ascii', 16, 26), 'NODETGT-CD');
  t.true([...Array(4).keys()].some((i) => r.dataIn!.readUInt16BE(58 + 2 * i) === 0x02a0));
  const pages = await w1.run([0x12, 1, 0, 0, 64, 0], A);
  t.deepEqual([...pages.dataIn!], [0x05, 0x00, 0x00, 0x03, 0x00, 0x80, 0x83]);
  sense(t, await w1.run([0x12, 1, 0xb0, 0, 64, 0], A), ILLEGAL, 0x24, 0);
});

test('READ CAPACITY(10) and READ(10)/(12) give the image in 2048-byte blocks; writes are unknown opcodes', async (t) => {
  const { w1 } = await twoWorkers();
  const cap = await w1.run(cdb10(0x25, 0, 0), A);
  t.deepEqual([cap.dataIn!.readUInt32BE(0), cap.dataIn!.readUInt32BE(4)], [BLOCKS - 1, 2048]);
  const r10 = await w1.run(cdb10(0x28, 5, 2), A);
  t.deepEqual(r10.dataIn, image().subarray(5 * 2048, 7 * 2048));
  const r12 = await w1.run(cdb(0xa8, 0, 0, 0, 0, 63, 0, 0, 0, 1, 0, 0), A);
  t.deepEqual(r12.dataIn, image().subarray(63 * 2048));
  sense(t, await w1.run(cdb10(0x28, 63, 2), A), ILLEGAL, 0x21, 0);
  for (const op of [0x2a, 0x0a, 0x08, 0x35, 0x9e])
    sense(t, await w1.run(cdb10(op, 0, 1), A), ILLEGAL, 0x20, 0);
});

test('eject on one worker is seen by the other: NOT READY, MEDIUM NOT PRESENT; load brings MEDIUM MAY HAVE CHANGED to the others', async (t) => {
  const { w1, w2 } = await twoWorkers();
  good(t, await w2.run(TUR, B)); // B is known to the LU before the change
  good(t, await w1.run(EJECT, A));
  sense(t, await w2.run(TUR, B), NOT_READY, 0x3a, 0);
  sense(t, await w2.run(cdb10(0x28, 0, 1), B), NOT_READY, 0x3a, 0);
  sense(t, await w2.run(cdb10(0x43, 0, 12), B), NOT_READY, 0x3a, 0);
  const rs = await w2.run([0x03, 0, 0, 0, 18, 0], B);
  t.deepEqual([rs.dataIn![2], rs.dataIn![12], rs.dataIn![13]], [NOT_READY, 0x3a, 0]);
  good(t, await w2.run([0x12, 0, 0, 0, 36, 0], B)); // INQUIRY needs no medium
  good(t, await w1.run(EJECT, A)); // ejecting an empty tray is not an error
  good(t, await w1.run(LOAD, A));
  good(t, await w1.run(TUR, A)); // the nexus that loaded knows
  sense(t, await w2.run(TUR, B), UNIT_ATTENTION, 0x28, 0);
  good(t, await w2.run(TUR, B));
  good(t, await w1.run(LOAD, A)); // loading a loaded medium changes nothing
  good(t, await w2.run(TUR, B));
});

test('PREVENT on one worker blocks eject and load from another until that nexus allows, is lost, or a reset', async (t) => {
  const { w1, w2 } = await twoWorkers();
  good(t, await w2.run(prevent(1), B));
  t.true(w1.lu.removalPrevented);
  sense(t, await w1.run(EJECT, A), ILLEGAL, 0x53, 0x02);
  good(t, await w1.run(TUR, A));
  good(t, await w2.run(prevent(0), B));
  good(t, await w1.run(EJECT, A));
  good(t, await w2.run(prevent(1), B));
  sense(t, await w1.run(LOAD, A), ILLEGAL, 0x53, 0x02);
  w2.lu.nexusLost(B);
  good(t, await w1.run(LOAD, A));
  good(t, await w2.run(prevent(3), B)); // MMC: persistent prevent accepted, bit 0 locks
  w1.lu.reset();
  t.false(w2.lu.removalPrevented);
  sense(t, await w1.run(prevent(1), A), UNIT_ATTENTION, 0x29, 0x03); // the reset is reported first
  good(t, await w1.run(prevent(1), A));
  w1.lu.shared.clearAllPrevent(); // what a target reset does on every LU
  t.false(w2.lu.removalPrevented);
});

test('START STOP UNIT on a removable LU: power conditions 1..15 change nothing (START/LOEJ ignored)', async (t) => {
  const { w1 } = await twoWorkers();
  for (let pc = 1; pc < 16; pc++) {
    good(t, await w1.run([0x1b, 1, 0, 0, (pc << 4) | 0x02, 0], A));
    good(t, await w1.run(TUR, A));
  }
  good(t, await w1.run([0x1b, 0, 0, 0, 0x04, 0], A)); // FL / NO_FLUSH with LOEJ = 0: no change
  good(t, await w1.run(TUR, A));
});

test('GET CONFIGURATION: profiles, current features, one feature; no current profile without a medium', async (t) => {
  const { w1 } = await twoWorkers();
  const all = await w1.run(cdb(0x46, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0), A);
  const d = all.dataIn!;
  t.is(d.readUInt32BE(0), d.length - 4);
  t.is(d.readUInt16BE(6), 0x0010, 'DVD-ROM current');
  t.deepEqual(featureCodes(d), [0x0000, 0x0001, 0x0002, 0x0003, 0x0010]);
  t.deepEqual([...d.subarray(12, 16)], [0x00, 0x10, 0x01, 0x00], 'profile DVD-ROM, CURRENTP');
  const one = await w1.run(cdb(0x46, 2, 0, 0x03, 0, 0, 0, 0, 64, 0), A);
  t.is(one.dataIn!.length, 16);
  t.deepEqual([...one.dataIn!.subarray(8, 13)], [0x00, 0x03, 0x03, 0x04, 0x29]);
  sense(t, await w1.run(cdb(0x46, 3, 0, 0, 0, 0, 0, 0, 64, 0), A), ILLEGAL, 0x24, 0);
  good(t, await w1.run(EJECT, A));
  const none = await w1.run(cdb(0x46, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0), A);
  t.is(none.dataIn!.readUInt16BE(6), 0);
  t.deepEqual(featureCodes(none.dataIn!), [0x0000, 0x0001, 0x0002, 0x0003], 'Random Readable not current');
});

test('READ TOC format 0 (LBA and MSF), format 1, bad track and format refused; READ DISC INFORMATION', async (t) => {
  const { w1 } = await twoWorkers();
  const toc = await w1.run(cdb(0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0), A);
  t.deepEqual(
    toc.dataIn!.toString('hex'),
    '00120101' + '00140100' + '00000000' + '0014aa00' + BLOCKS.toString(16).padStart(8, '0'),
  );
  const msf = await w1.run(cdb(0x43, 0x02, 0, 0, 0, 0, 0, 0, 100, 0), A);
  t.deepEqual([...msf.dataIn!.subarray(8, 12)], [0, 0, 2, 0], 'track 1 at 00:02:00');
  t.deepEqual([...msf.dataIn!.subarray(16, 20)], [0, 0, 2, 64], 'lead-out at 150 + 64 frames');
  const leadOut = await w1.run(cdb(0x43, 0, 0, 0, 0, 0, 0xaa, 0, 100, 0), A);
  t.is(leadOut.dataIn!.readUInt16BE(0), 10);
  const session = await w1.run(cdb(0x43, 0, 1, 0, 0, 0, 0, 0, 100, 0), A);
  t.is(session.dataIn!.toString('hex'), '000a0101' + '00140100' + '00000000');
  sense(t, await w1.run(cdb(0x43, 0, 0, 0, 0, 0, 2, 0, 100, 0), A), ILLEGAL, 0x24, 0);
  sense(t, await w1.run(cdb(0x43, 0, 2, 0, 0, 0, 0, 0, 100, 0), A), ILLEGAL, 0x24, 0);
  const di = await w1.run(cdb(0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0), A);
  t.deepEqual([...di.dataIn!.subarray(0, 7)], [0, 32, 0x0e, 1, 1, 1, 1]);
});

test('GET EVENT STATUS NOTIFICATION: polled media class; NewMedia once after another nexus loads', async (t) => {
  const { w1, w2 } = await twoWorkers();
  const gesn = (w: typeof w1, nexus: string, classes = 0x10) =>
    w.run(cdb(0x4a, 1, 0, 0, classes, 0, 0, 0, 8, 0), nexus);
  let r = await gesn(w2, B);
  t.deepEqual([...r.dataIn!], [0, 6, 4, 0x10, 0, 0x02, 0, 0]);
  r = await gesn(w2, B, 0x02);
  t.deepEqual([...r.dataIn!], [0, 2, 0x80, 0x10]);
  sense(t, await w2.run(cdb(0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0), B), ILLEGAL, 0x24, 0);
  good(t, await w1.run(EJECT, A));
  r = await gesn(w2, B);
  t.is(r.dataIn![5], 0x00, 'no medium');
  good(t, await w1.run(LOAD, A));
  r = await gesn(w2, B); // not held up by the pending unit attention
  t.deepEqual([r.dataIn![4], r.dataIn![5]], [2, 0x02], 'NewMedia, media present');
  r = await gesn(w2, B);
  t.is(r.dataIn![4], 0, 'reported once');
  good(t, await w2.run(TUR, B)); // the unit attention went with the event
});

test('MODE SENSE on a cd LU: pages 01h and 2Ah, no block descriptor, LOCK STATE follows PREVENT', async (t) => {
  const { w1 } = await twoWorkers();
  const r = await w1.run(cdb(0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 255, 0), A);
  const d = r.dataIn!;
  t.is(d.readUInt16BE(6), 0, 'no block descriptor');
  t.is(d[3], 0, 'no WP / DPOFUA');
  t.deepEqual([d[8], d[20]], [0x01, 0x2a]);
  t.is(d[20 + 6], 0x29);
  good(t, await w1.run(prevent(1), A));
  const locked = await w1.run(cdb(0x1a, 0x08, 0x2a, 0, 255, 0), A);
  t.is(locked.dataIn![4 + 6], 0x2b);
  sense(t, await w1.run(cdb(0x1a, 0, 0x08, 0, 255, 0), A), ILLEGAL, 0x24, 0);
  sense(t, await w1.run(cdb10(0x55, 0, 0), A), ILLEGAL, 0x20, 0);
});

test('REPORT SUPPORTED OPERATION CODES on a cd LU lists the MMC table and its usage maps', async (t) => {
  const { w1 } = await twoWorkers();
  const r = await w1.run(cdb(0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0), A);
  const ops: number[] = [];
  for (let off = 4; off < r.dataIn!.length; off += 8) ops.push(r.dataIn![off]);
  t.deepEqual(
    ops,
    [0x00, 0x03, 0x12, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x43, 0x46, 0x4a, 0x51, 0x5a, 0xa0, 0xa3, 0xa8],
  );
  const one = await w1.run(cdb(0xa3, 0x0c, 1, 0x4a, 0, 0, 0, 0, 0, 64, 0, 0), A);
  t.deepEqual([...one.dataIn!.subarray(4)], [0x4a, 0x01, 0, 0, 0xff, 0, 0, 0xff, 0xff, 0]);
  sense(t, await w1.run(cdb(0x4a, 3, 0, 0, 0x10, 0, 0, 0, 8, 0), A), ILLEGAL, 0x24, 0);
});

test('a removable disk: type 00h with RMB = 1, LOEJ ejects and loads, reserved PREVENT values refused', async (t) => {
  const { w1, w2 } = await twoWorkers('disk');
  const inq = await w1.run([0x12, 0, 0, 0, 36, 0], A);
  t.deepEqual([inq.dataIn![0], inq.dataIn![1]], [0x00, 0x80]);
  good(t, await w1.run(EJECT, A));
  sense(t, await w2.run(cdb10(0x2a, 0, 1), B), NOT_READY, 0x3a, 0);
  sense(t, await w2.run(cdb10(0x25, 0, 0), B), NOT_READY, 0x3a, 0);
  good(t, await w2.run(LOAD, B));
  sense(t, await w1.run(TUR, A), UNIT_ATTENTION, 0x28, 0);
  sense(t, await w1.run(prevent(2), A), ILLEGAL, 0x24, 0);
});

test('a fixed disk keeps refusing LOEJ and reserved power conditions', async (t) => {
  const f = fixture();
  t.false(f.lu.removable);
  sense(t, await f.run([0x1b, 0, 0, 0, 0x02, 0]), ILLEGAL, 0x24, 0);
  sense(t, await f.run([0x1b, 0, 0, 0, 0x40, 0]), ILLEGAL, 0x24, 0);
});

test('a cd LU needs a read-only backstore', (t) => {
  const store = new MemoryBackstore({ sizeBytes: 2048 * 4, blockSize: 2048 });
  t.throws(() => new LogicalUnit(store, identityOf('iqn.t', 0, generateIdentity(), 'cd'), { type: 'cd' }), {
    message: /read-only/,
  });
});
