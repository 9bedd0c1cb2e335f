import test from 'ava';
import { ILLEGAL, cdb10, fieldPointer, fixture, good, pattern, sense } from './scsi-helpers';

const sense6 = (page: number, opts: { pc?: number; dbd?: boolean; sub?: number; alloc?: number } = {}) => [
  0x1a,
  opts.dbd ? 0x08 : 0,
  ((opts.pc ?? 0) << 6) | page,
  opts.sub ?? 0,
  opts.alloc ?? 255,
  0,
];
const sense10 = (
  page: number,
  opts: { pc?: number; dbd?: boolean; llbaa?: boolean; alloc?: number } = {},
) => {
  const alloc = opts.alloc ?? 1024;
  return [
    0x5a,
    (opts.dbd ? 0x08 : 0) | (opts.llbaa ? 0x10 : 0),
    ((opts.pc ?? 0) << 6) | page,
    0,
    0,
    0,
    0,
    alloc >> 8,
    alloc & 0xff,
    0,
  ];
};

/** Split mode parameter data into header fields, block descriptor and pages. */
function parse(d: Buffer, ten: boolean) {
  const hl = ten ? 8 : 4;
  const length = ten ? d.readUInt16BE(0) + 2 : d[0] + 1;
  const dsp = ten ? d[3] : d[2];
  const bdl = ten ? d.readUInt16BE(6) : d[3];
  const pages = new Map<number, Buffer>();
  for (let off = hl + bdl; off < d.length; off += d[off + 1] + 2)
    pages.set(d[off] & 0x3f, d.subarray(off, off + d[off + 1] + 2));
  return { length, dsp, bdl, desc: d.subarray(hl, hl + bdl), pages };
}

test('MODE SENSE(6) all pages: header, 8-byte block descriptor, caching/control/IEC in order', async (t) => {
  const f = fixture();
  const r = await f.run(sense6(0x3f));
  good(t, r);
  const m = parse(r.dataIn!, false);
  t.is(m.length, r.dataIn!.length);
  t.is(m.dsp, 0x10); // DPOFUA, not WP
  t.is(m.bdl, 8);
  t.is(m.desc.readUInt32BE(0), 1024);
  t.is(m.desc.readUIntBE(5, 3), 512);
  t.deepEqual([...m.pages.keys()], [0x08, 0x0a, 0x1c]);
  const caching = m.pages.get(0x08)!;
  t.is(caching.length, 20);
  t.is(caching[2] & 0x04, 0x04); // WCE = backstore.writeCacheEnabled
  const control = m.pages.get(0x0a)!;
  t.is(control.length, 12);
  t.is(control[2] & 0x04, 0); // D_SENSE 0: fixed format
  t.is(control[3] >> 4, 1); // QAM 1
  t.is(control[4] & 0x08, 0); // SWP
});

test('caching page tells the truth: WCE clear when the backstore writes through', async (t) => {
  const f = fixture({ writeCacheEnabled: false });
  const m = parse((await f.run(sense6(0x08, { dbd: true }))).dataIn!, false);
  t.is(m.bdl, 0);
  t.is(m.pages.get(0x08)![2] & 0x04, 0);
});

test('MODE SENSE: single page equals the page inside all pages; changeable shows only SWP', async (t) => {
  const f = fixture();
  const all = parse((await f.run(sense6(0x3f))).dataIn!, false);
  for (const code of [0x08, 0x0a, 0x1c]) {
    const one = parse((await f.run(sense6(code))).dataIn!, false);
    t.deepEqual(one.pages.get(code), all.pages.get(code));
    t.is(one.pages.size, 1);
  }
  const ch = parse((await f.run(sense6(0x3f, { pc: 1 }))).dataIn!, false);
  t.deepEqual(ch.pages.get(0x0a)!.subarray(2), Buffer.from([0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0]));
  t.true(ch.pages.get(0x08)!.subarray(2).equals(Buffer.alloc(18)));
  good(t, await f.run(sense6(0x3f, { pc: 2 })));
  good(t, await f.run(sense6(0x0a, { sub: 0xff })));
});

test('MODE SENSE: saved values, unknown page and subpage are refused', async (t) => {
  const f = fixture();
  let r = await f.run(sense6(0x3f, { pc: 3 }));
  sense(t, r, ILLEGAL, 0x39, 0x00);
  r = await f.run(sense6(0x19));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 2, 5]);
  r = await f.run(sense6(0x08, { sub: 1 }));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 3, 7]);
});

test('MODE SENSE allocation length clips without error (no residual overflow for 4 bytes)', async (t) => {
  const f = fixture();
  const full = (await f.run(sense6(0x3f))).dataIn!;
  for (const alloc of [0, 1, 4, 12, full.length, 255]) {
    const r = await f.run(sense6(0x3f, { alloc }));
    good(t, r);
    t.deepEqual(r.dataIn ?? Buffer.alloc(0), full.subarray(0, alloc));
  }
});

test('MODE SENSE(10): 8-byte header; LLBAA gives the 16-byte descriptor with LONGLBA', async (t) => {
  const f = fixture();
  let m = parse((await f.run(sense10(0x3f))).dataIn!, true);
  t.is(m.bdl, 8);
  t.is(m.dsp, 0x10);
  t.deepEqual([...m.pages.keys()], [0x08, 0x0a, 0x1c]);
  const d = (await f.run(sense10(0x3f, { llbaa: true }))).dataIn!;
  t.is(d[4] & 1, 1);
  m = parse(d, true);
  t.is(m.bdl, 16);
  t.is(Number(m.desc.readBigUInt64BE(0)), 1024);
  t.is(m.desc.readUInt32BE(12), 512);
  m = parse((await f.run(sense10(0x0a, { dbd: true, llbaa: true }))).dataIn!, true);
  t.is(m.bdl, 0);
});

test('WP bit in the device-specific parameter for a read-only LU', async (t) => {
  const f = fixture({ readOnly: true });
  t.is(parse((await f.run(sense6(0x3f))).dataIn!, false).dsp, 0x90);
  t.is(parse((await f.run(sense10(0x3f))).dataIn!, true).dsp, 0x90);
});

/** MODE SELECT(6) data with the control page as read back, SWP set as asked. */
async function controlSelect(f: ReturnType<typeof fixture>, swp: boolean): Promise<Buffer> {
  const page = parse((await f.run(sense6(0x0a, { dbd: true }))).dataIn!, false).pages.get(0x0a)!;
  const data = Buffer.concat([Buffer.alloc(4), page]);
  data[4 + 4] = swp ? data[4 + 4] | 0x08 : data[4 + 4] & ~0x08;
  return data;
}

test('MODE SELECT(6) sets SWP: writes refused with SOFTWARE WRITE PROTECTED, WP shown; cleared again', async (t) => {
  const f = fixture();
  const other = 'iqn.other,isid=2,tpgt=1';
  good(t, await f.run([0, 0, 0, 0, 0, 0], { nexus: other })); // make the other nexus known
  const on = await controlSelect(f, true);
  good(t, await f.run([0x15, 0x10, 0, 0, on.length, 0], { data: on }));
  t.true(f.lu.softwareWriteProtect);
  sense(t, await f.run(cdb10(0x2a, 0, 1), { data: pattern(512) }), 0x07, 0x27, 0x02);
  good(t, await f.run(cdb10(0x28, 0, 1)));
  const m = parse((await f.run(sense6(0x0a))).dataIn!, false);
  t.is(m.dsp & 0x80, 0x80);
  t.is(m.pages.get(0x0a)![4] & 0x08, 0x08);
  // the other I_T nexus is told the mode parameters changed
  sense(t, await f.run([0, 0, 0, 0, 0, 0], { nexus: other }), 0x06, 0x2a, 0x01);
  good(t, await f.run([0, 0, 0, 0, 0, 0], { nexus: other }));
  const off = await controlSelect(f, false);
  good(t, await f.run([0x15, 0x10, 0, 0, off.length, 0], { data: off }));
  good(t, await f.run(cdb10(0x2a, 0, 1), { data: pattern(512) }));
});

test('MODE SELECT(10) with a block descriptor restating the geometry is accepted', async (t) => {
  const f = fixture();
  const page = parse((await f.run(sense6(0x08, { dbd: true }))).dataIn!, false).pages.get(0x08)!;
  const hdr = Buffer.alloc(8);
  hdr.writeUInt16BE(8, 6);
  const desc = Buffer.alloc(8);
  desc.writeUIntBE(512, 5, 3);
  const data = Buffer.concat([hdr, desc, page]);
  good(t, await f.run([0x55, 0x10, 0, 0, 0, 0, 0, 0, data.length, 0], { data }));
  desc.writeUIntBE(4096, 5, 3);
  const bad = Buffer.concat([hdr, desc, page]);
  sense(t, await f.run([0x55, 0x10, 0, 0, 0, 0, 0, 0, bad.length, 0], { data: bad }), ILLEGAL, 0x26, 0);
});

test('MODE SELECT refusals: SP=1, unchangeable bit, unknown page, wrong length, short list', async (t) => {
  const f = fixture();
  const on = await controlSelect(f, true);
  let r = await f.run([0x15, 0x11, 0, 0, on.length, 0], { data: on });
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 0]);
  // WCE is not changeable
  const caching = parse((await f.run(sense6(0x08, { dbd: true }))).dataIn!, false).pages.get(0x08)!;
  const wce = Buffer.concat([Buffer.alloc(4), caching]);
  wce[6] ^= 0x04;
  r = await f.run([0x15, 0x10, 0, 0, wce.length, 0], { data: wce });
  sense(t, r, ILLEGAL, 0x26, 0);
  t.deepEqual(fieldPointer(r), [false, 6, 2]);
  const unknown = Buffer.concat([Buffer.alloc(4), Buffer.from([0x19, 2, 0, 0])]);
  sense(t, await f.run([0x15, 0x10, 0, 0, unknown.length, 0], { data: unknown }), ILLEGAL, 0x26, 0);
  const badLen = Buffer.from(on);
  badLen[5] = 0x08;
  sense(t, await f.run([0x15, 0x10, 0, 0, badLen.length, 0], { data: badLen }), ILLEGAL, 0x26, 0);
  sense(t, await f.run([0x15, 0x10, 0, 0, 10, 0], { data: on.subarray(0, 10) }), ILLEGAL, 0x1a, 0);
  good(t, await f.run([0x15, 0x10, 0, 0, 0, 0]));
  t.false(f.lu.softwareWriteProtect);
  t.is(f.disp.dataOutLength({ cdb: Buffer.from([0x15, 0x10, 0, 0, 16, 0]), lun: 0 }), 16);
  t.is(f.disp.dataOutLength({ cdb: Buffer.from([0x55, 0x10, 0, 0, 0, 0, 0, 1, 2, 0]), lun: 0 }), 258);
});
