/**
 * EXTENDED COPY / RECEIVE COPY RESULTS (src/scsi/xcopy.ts): parameter list parsing and refusals against LUs
 * over the memory backstore, copies that overlap within one LU, held results; then end to end over loopback
 * with our TestInitiator between two file LUs (copy_file_range), read back byte for byte.
 */
import test from 'ava';
import { MemoryBackstore } from '../src/backstore/memory';
import { ScsiDispatcher, type ScsiResult } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import { MAX_CSCD_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS } from '../src/scsi/xcopy';
import { TestInitiator } from './helpers/initiator';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { ILLEGAL, cdb10, fieldPointer, good, pattern, sense, testIdentity } from './scsi-helpers';

const COPY_ABORTED = 0x0a;
const BS = 512;
const NEXUS = 'iqn.initiator,isid=1,tpgt=1';

function cscd(naa: Buffer, blockSize = BS, type = 0xe4): Buffer {
  const d = Buffer.alloc(32);
  d[0] = type;
  d[4] = 0x01; // binary code set
  d[5] = 0x03; // association LU, NAA
  d[7] = naa.length;
  naa.copy(d, 8);
  d.writeUIntBE(blockSize, 29, 3);
  return d;
}

function b2b(src: number, dst: number, blocks: number, srcLba: number, dstLba: number, type = 0x02): Buffer {
  const d = Buffer.alloc(28);
  d[0] = type;
  d.writeUInt16BE(0x18, 2);
  d.writeUInt16BE(src, 4);
  d.writeUInt16BE(dst, 6);
  d.writeUInt16BE(blocks, 10);
  d.writeBigUInt64BE(BigInt(srcLba), 12);
  d.writeBigUInt64BE(BigInt(dstLba), 20);
  return d;
}

function paramList(targets: Buffer[], segments: Buffer[], listId = 1, usage = 0): Buffer {
  const h = Buffer.alloc(16);
  h[0] = listId;
  h[1] = usage << 3;
  const t = Buffer.concat(targets);
  const s = Buffer.concat(segments);
  h.writeUInt16BE(t.length, 2);
  h.writeUInt32BE(s.length, 8);
  return Buffer.concat([h, t, s]);
}

function xcopyCdb(length: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x83;
  c.writeUInt32BE(length, 10);
  return c;
}

function rcrCdb(sa: number, listId: number, alloc = 1024): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x84;
  c[1] = sa;
  c[2] = listId;
  c.writeUInt32BE(alloc, 10);
  return c;
}

interface Two {
  lus: LogicalUnit[];
  stores: MemoryBackstore[];
  disp: ScsiDispatcher;
  bad: string[];
  run(cdb: Buffer, data?: Buffer, lun?: number): Promise<ScsiResult>;
}

function twoLus(blocks = 1024): Two {
  const stores = [0, 1].map(() => new MemoryBackstore({ sizeBytes: blocks * BS }));
  const lus = stores.map((s, i) => new LogicalUnit(s, testIdentity('iqn.2026-11.org.nodetgt:xc', i)));
  const bad: string[] = [];
  for (const lu of lus) lu.badRequest = (what) => void bad.push(what);
  const disp = new ScsiDispatcher(new Map(lus.map((lu, i) => [i, lu])));
  const run = (cdb: Buffer, data?: Buffer, lun = 0) =>
    Promise.resolve(
      disp.execute({
        lun,
        cdb,
        expectedLength: data?.length ?? 0,
        readFlag: data === undefined,
        writeFlag: data !== undefined,
        dataOut: data ? [data] : [],
        nexus: NEXUS,
      }),
    );
  return { lus, stores, disp, bad, run };
}

async function xcopy(f: Two, list: Buffer): Promise<ScsiResult> {
  return f.run(xcopyCdb(list.length), list);
}

test('block -> block copies between two LUs of the target, named by NAA; the source is untouched', async (t) => {
  const f = twoLus();
  const data = pattern(16 * BS, 7);
  await f.stores[0].write(3 * BS, [data], false);
  const naa = f.lus.map((lu) => lu.identity.naa);
  good(t, await xcopy(f, paramList([cscd(naa[0]), cscd(naa[1])], [b2b(0, 1, 16, 3, 100)])));
  const back = Buffer.alloc(16 * BS);
  await f.stores[1].read(100 * BS, back);
  t.deepEqual(back, data);
  await f.stores[0].read(3 * BS, back);
  t.deepEqual(back, data);
  t.deepEqual(f.bad, []);
});

test('overlapping ranges within one LU copy as if read whole first, in both directions', async (t) => {
  for (const [from, to] of [
    [10, 14],
    [14, 10],
  ]) {
    const f = twoLus();
    const before = pattern(64 * BS, from);
    await f.stores[0].write(0, [before], false);
    const naa = f.lus[0].identity.naa;
    good(t, await xcopy(f, paramList([cscd(naa)], [b2b(0, 0, 20, from, to)])));
    const expected = Buffer.from(before);
    before.copy(expected, to * BS, from * BS, (from + 20) * BS);
    const got = Buffer.alloc(64 * BS);
    await f.stores[0].read(0, got);
    t.true(got.equals(expected), `${from} -> ${to}`);
  }
});

test('parameter list length 0 is no copy; shorter than its descriptors: PARAMETER LIST LENGTH ERROR', async (t) => {
  const f = twoLus();
  good(t, await f.run(xcopyCdb(0)));
  const list = paramList([cscd(f.lus[0].identity.naa)], [b2b(0, 0, 1, 0, 1)]);
  sense(t, await xcopy(f, list.subarray(0, list.length - 1)), ILLEGAL, 0x1a, 0);
  sense(t, await xcopy(f, list.subarray(0, 10)), ILLEGAL, 0x1a, 0);
  // Longer than any list we accept: refused on arrival, before the data is solicited.
  const admit = f.disp.admitDataOut({ cdb: xcopyCdb(1 << 20), lun: 0 });
  t.true('sense' in admit && admit.sense[12] === 0x1a);
});

test('unsupported descriptor types and too many descriptors: 26/07, 26/09, 26/06, 26/08 with a pointer', async (t) => {
  const f = twoLus();
  const naa = f.lus[0].identity.naa;
  let r = await xcopy(f, paramList([cscd(naa, BS, 0xe0)], [b2b(0, 0, 1, 0, 1)]));
  sense(t, r, ILLEGAL, 0x26, 0x07);
  t.deepEqual(fieldPointer(r), [false, 16, undefined]);
  r = await xcopy(f, paramList([cscd(naa)], [b2b(0, 0, 1, 0, 1, 0x01)]));
  sense(t, r, ILLEGAL, 0x26, 0x09);
  t.deepEqual(fieldPointer(r), [false, 48, undefined]);
  const many = Array.from({ length: MAX_CSCD_DESCRIPTORS + 1 }, () => cscd(naa));
  sense(t, await xcopy(f, paramList(many, [b2b(0, 0, 1, 0, 1)])), ILLEGAL, 0x26, 0x06);
  const segs = Array.from({ length: MAX_SEGMENT_DESCRIPTORS + 1 }, () => b2b(0, 0, 1, 0, 1));
  sense(t, await xcopy(f, paramList([cscd(naa)], segs)), ILLEGAL, 0x26, 0x08);
  t.is(f.bad.length, 4);
});

test('a designator of no LU of this target (or of another target): COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE', async (t) => {
  const f = twoLus();
  const other = twoLus(); // another target: its LUs are not reachable from this one
  for (const naa of [Buffer.from('3fffffffffffffff', 'hex'), other.lus[1].identity.naa]) {
    const r = await xcopy(f, paramList([cscd(f.lus[0].identity.naa), cscd(naa)], [b2b(0, 1, 1, 0, 0)]));
    sense(t, r, COPY_ABORTED, 0x0d, 0x02);
  }
  // A segment naming a CSCD index past the list, the same.
  const r = await xcopy(f, paramList([cscd(f.lus[0].identity.naa)], [b2b(0, 1, 1, 0, 0)]));
  sense(t, r, COPY_ABORTED, 0x0d, 0x02);
  t.is(f.bad.length, 3);
});

test('ranges past either LU: COPY ABORTED naming the segment and its LBA field; no data moves', async (t) => {
  const f = twoLus(1024);
  const naa = f.lus.map((lu) => lu.identity.naa);
  const tg = [cscd(naa[0]), cscd(naa[1])];
  let r = await xcopy(f, paramList(tg, [b2b(0, 1, 1, 0, 0), b2b(0, 1, 8, 1020, 0)]));
  sense(t, r, COPY_ABORTED, 0, 0);
  t.is(r.sense!.readUInt32BE(8), 1, 'segment number');
  t.deepEqual(fieldPointer(r), [false, 16 + 64 + 28 + 12, undefined]);
  r = await xcopy(f, paramList(tg, [b2b(0, 1, 8, 0, 1017)]));
  sense(t, r, COPY_ABORTED, 0, 0);
  t.deepEqual(fieldPointer(r), [false, 16 + 64 + 20, undefined]);
  t.is(f.stores[1].allocatedBytes, 0);
});

test('a write-protected destination: DATA PROTECT', async (t) => {
  const f = twoLus();
  f.lus[1].softwareWriteProtect = true;
  const naa = f.lus.map((lu) => lu.identity.naa);
  const r = await xcopy(f, paramList([cscd(naa[0]), cscd(naa[1])], [b2b(0, 1, 1, 0, 0)]));
  sense(t, r, 0x07, 0x27, 0x02);
});

test('RECEIVE COPY RESULTS: COPY STATUS held once per list id, FAILED SEGMENT DETAILS, OPERATING PARAMETERS', async (t) => {
  const f = twoLus();
  const naa = f.lus[0].identity.naa;
  sense(t, await f.run(rcrCdb(0x00, 5)), ILLEGAL, 0x24, 0);
  good(t, await xcopy(f, paramList([cscd(naa)], [b2b(0, 0, 4, 0, 8)], 5, 0)));
  let r = await f.run(rcrCdb(0x00, 5));
  good(t, r);
  t.is(r.dataIn![4], 0x01, 'completed without errors');
  t.is(r.dataIn!.readUInt16BE(5), 1, 'segments processed');
  t.is(r.dataIn!.readUInt32BE(8), 4 * BS);
  sense(t, await f.run(rcrCdb(0x00, 5)), ILLEGAL, 0x24, 0); // reported once
  // Not held with LIST ID USAGE 10b.
  good(t, await xcopy(f, paramList([cscd(naa)], [b2b(0, 0, 4, 0, 8)], 6, 2)));
  sense(t, await f.run(rcrCdb(0x00, 6)), ILLEGAL, 0x24, 0);
  // A failed copy: status "completed with errors", and its sense data as failed segment details.
  const failed = await xcopy(f, paramList([cscd(naa)], [b2b(0, 0, 4, 5000, 8)], 7, 0));
  sense(t, failed, COPY_ABORTED, 0, 0);
  r = await f.run(rcrCdb(0x04, 7));
  good(t, r);
  t.is(r.dataIn![56], 0x02);
  t.deepEqual(r.dataIn!.subarray(60, 60 + r.dataIn!.readUInt16BE(58)), failed.sense);
  r = await f.run(rcrCdb(0x00, 7));
  t.is(r.dataIn![4], 0x02);
  t.is(r.dataIn!.readUInt32BE(0), 8);
  r = await f.run(rcrCdb(0x04, 7));
  t.is(r.dataIn!.readUInt32BE(0), 0, 'details discarded once sent');
  r = await f.run(rcrCdb(0x03, 0));
  good(t, r);
  const d = r.dataIn!;
  t.is(d.readUInt16BE(8), MAX_CSCD_DESCRIPTORS);
  t.is(d.readUInt16BE(10), MAX_SEGMENT_DESCRIPTORS);
  t.is(d.readUInt32BE(16), 0xffff * BS);
  t.deepEqual([...d.subarray(44, 44 + d[43])], [0x02, 0xe4]);
  // Held results die with the I_T nexus.
  good(t, await xcopy(f, paramList([cscd(naa)], [b2b(0, 0, 1, 0, 8)], 9, 0)));
  f.lus[0].nexusLost(NEXUS);
  sense(t, await f.run(rcrCdb(0x00, 9)), ILLEGAL, 0x24, 0);
  // RECEIVE DATA (01h) is not offered.
  sense(t, await f.run(rcrCdb(0x01, 0)), ILLEGAL, 0x24, 0);
});

test('INQUIRY: 3PC set, VPD 8Fh lists EXTENDED COPY and RECEIVE COPY RESULTS service actions', async (t) => {
  const f = twoLus();
  const std = await f.run(Buffer.from([0x12, 0, 0, 0, 96, 0]));
  t.is(std.dataIn![5] & 0x08, 0x08);
  const r = await f.run(Buffer.from([0x12, 1, 0x8f, 1, 0, 0]));
  good(t, r);
  const p = r.dataIn!;
  t.is(p.readUInt16BE(2) + 4, p.length);
  t.is(p.readUInt16BE(4), 0x0001);
  const cmds = p.subarray(9, 9 + p[8]);
  t.deepEqual([...cmds], [0x83, 1, 0x00, 0x84, 3, 0x00, 0x03, 0x04]);
  for (let at = 4; at < p.length; at += 4 + p.readUInt16BE(at + 2)) t.is(p.readUInt16BE(at + 2) % 4, 0);
});

test('end to end: XCOPY from LUN 0 to LUN 1 of file LUs, read back byte for byte, RECEIVE COPY RESULTS', async (t) => {
  const tt = await startTestTarget({
    workers: 1,
    luns: [
      { lun: 0, path: 'a.img', size: '16M' },
      { lun: 1, path: 'b.img', size: '16M' },
    ],
  });
  const ini = await TestInitiator.connect(tt.port);
  try {
    t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
    const naa: Buffer[] = [];
    for (const lun of [0, 1]) {
      const v = await ini.scsi(Buffer.from([0x12, 1, 0x83, 1, 0, 0]), { lun, edtl: 256, read: true });
      const d = v.data;
      t.is(d[5] & 0x0f, 0x03, 'first designator is the NAA');
      naa.push(Buffer.from(d.subarray(8, 8 + d[7])));
    }
    const blocks = 3000; // ~1.5 MiB, several io pieces
    const data = pattern(blocks * BS, 42);
    for (let at = 0; at < blocks; at += 1000) {
      const w = await ini.scsi(cdb10(0x2a, 100 + at, 1000), {
        lun: 0,
        edtl: 1000 * BS,
        write: true,
        data: data.subarray(at * BS, (at + 1000) * BS),
      });
      t.is(w.status, 0);
    }
    const list = paramList([cscd(naa[0]), cscd(naa[1])], [b2b(0, 1, blocks, 100, 7)], 3, 0);
    const x = await ini.scsi(xcopyCdb(list.length), { lun: 0, edtl: list.length, write: true, data: list });
    t.is(x.status, 0);
    const back: Buffer[] = [];
    for (let at = 0; at < blocks; at += 1000) {
      const r = await ini.scsi(cdb10(0x28, 7 + at, 1000), { lun: 1, edtl: 1000 * BS, read: true });
      t.is(r.status, 0);
      back.push(r.data);
    }
    t.true(Buffer.concat(back).equals(data), 'LUN 1 holds the copy');
    const s = await ini.scsi(rcrCdb(0x00, 3, 12), { lun: 0, edtl: 12, read: true });
    t.is(s.status, 0);
    t.is(s.data[4], 0x01);
    t.is(s.data.readUInt32BE(8), blocks * BS);
    // The same list naming LUN 1 of another target's designator space: unreachable.
    const bogus = paramList([cscd(Buffer.from('3123456789abcdef', 'hex'))], [b2b(0, 0, 1, 0, 0)]);
    const u = await ini.scsi(xcopyCdb(bogus.length), {
      lun: 0,
      edtl: bogus.length,
      write: true,
      data: bogus,
    });
    t.is(u.status, 2);
  } finally {
    ini.close();
    await tt.close();
  }
});
