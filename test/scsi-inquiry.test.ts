import test from 'ava';
import { generateIdentity } from '../src/backstore/prepare';
import { ILLEGAL, TARGET, fieldPointer, fixture, good, sense } from './scsi-helpers';

const inq = (evpd: number, page: number, alloc: number) => [0x12, evpd, page, alloc >> 8, alloc & 0xff, 0];

test('standard INQUIRY: SBC device, SPC-4, format 2, HiSup, CmdQue, ASCII ids, version descriptors', async (t) => {
  const f = fixture();
  const r = await f.run(inq(0, 0, 260));
  good(t, r);
  const d = r.dataIn!;
  t.is(d.length, 96);
  t.is(d[0], 0x00); // qualifier 0, type 0
  t.is(d[1] & 0x80, 0); // not removable
  t.is(d[2], 0x06);
  t.is(d[3], 0x12); // HISUP | format 2
  t.is(d[4], d.length - 5);
  t.is(d[5] & 0x01, 0); // PROTECT
  t.is(d[7] & 0x02, 0x02); // CMDQUE
  t.is(d[3] & 0x80, 0); // AERC clear
  t.is(d[3] & 0x40, 0); // TRMTSK clear
  t.is(d.toString('ascii', 8, 16), 'NODETGT ');
  t.is(d.toString('ascii', 16, 32), 'NODETGT-DISK    ');
  t.is(d.toString('ascii', 32, 36), '0001');
  for (let i = 8; i < 36; i++) t.true(d[i] >= 0x20 && d[i] <= 0x7e);
  const versions = [0, 1, 2, 3].map((i) => d.readUInt16BE(58 + 2 * i));
  t.deepEqual(versions, [0x00a0, 0x0960, 0x0460, 0x04c0]);
});

test('INQUIRY allocation length truncates and never errors (0..260); 255 and 256 agree', async (t) => {
  const f = fixture();
  const full = (await f.run(inq(0, 0, 260))).dataIn!;
  for (let alloc = 0; alloc <= 260; alloc++) {
    const r = await f.run(inq(0, 0, alloc));
    good(t, r);
    t.deepEqual(r.dataIn ?? Buffer.alloc(0), full.subarray(0, Math.min(alloc, full.length)));
  }
  for (const page of [0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2]) {
    const r = await f.run(inq(1, page, 3));
    good(t, r);
    t.is(r.dataIn!.length, 3);
  }
});

test('EVPD=0 with a page code, unknown VPD page, CmdDt set: INVALID FIELD IN CDB', async (t) => {
  const f = fixture();
  let r = await f.run(inq(0, 1, 256));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 2, 7]);
  r = await f.run(inq(1, 0x99, 256));
  sense(t, r, ILLEGAL, 0x24, 0);
  r = await f.run(inq(2, 0, 256)); // CmdDt (obsolete)
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 1]);
});

test('VPD 00h lists the pages, and every listed page can be read', async (t) => {
  const f = fixture();
  const r = await f.run(inq(1, 0, 255));
  good(t, r);
  const d = r.dataIn!;
  t.is(d[1], 0x00);
  const pages = [...d.subarray(4, 4 + d.readUInt16BE(2))];
  t.deepEqual(pages, [0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2]);
  for (const p of pages) {
    const v = await f.run(inq(1, p, 255));
    good(t, v);
    t.is(v.dataIn![1], p);
    t.is(v.dataIn!.length, v.dataIn!.readUInt16BE(2) + 4);
  }
});

test("VPD 80h unit serial number and 83h identifiers are the LU's provisioned identity", async (t) => {
  const f = fixture();
  const id = f.lu.identity;
  const s = (await f.run(inq(1, 0x80, 255))).dataIn!;
  t.is(s.toString('ascii', 4, 4 + s[3]), id.serial);
  const d = (await f.run(inq(1, 0x83, 255))).dataIn!;
  const found: Array<{ cs: number; piv: number; assoc: number; type: number; value: Buffer }> = [];
  for (let off = 4; off < d.length;) {
    const len = d[off + 3];
    found.push({
      cs: d[off] & 0x0f,
      piv: d[off + 1] >> 7,
      assoc: (d[off + 1] >> 4) & 3,
      type: d[off + 1] & 0x0f,
      value: d.subarray(off + 4, off + 4 + len),
    });
    off += 4 + len;
  }
  const naa = found.find((x) => x.type === 3)!;
  t.is(naa.assoc, 0);
  t.is(naa.cs, 1);
  t.deepEqual(naa.value, id.naa);
  t.is(naa.value[0] >> 4, 3); // NAA 3h: locally assigned
  const t10 = found.find((x) => x.type === 1)!;
  t.is(t10.cs, 2);
  t.is(t10.value.toString('ascii'), 'NODETGT ' + id.serial);
  const port = found.find((x) => x.type === 4)!;
  t.is(port.assoc, 1);
  t.is(port.value.readUInt16BE(2), 1);
  const name = found.find((x) => x.type === 8)!;
  t.is(name.assoc, 2);
  t.is(name.value.length % 4, 0);
  t.is(name.value.toString('utf8').replace(/\0+$/, ''), TARGET);
});

test('generated identities: 16 hex digits of serial, NAA 3h, a new one each time', (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const id = generateIdentity();
    t.regex(id.serial, /^[0-9A-F]{16}$/);
    t.regex(id.naa, /^3[0-9a-f]{15}$/);
    seen.add(id.serial);
    seen.add(id.naa);
  }
  t.is(seen.size, 400, 'no serial or NAA repeats');
});

test('VPD B0h block limits: SBC-3 length 3Ch, limits, unmap fields follow thin provisioning', async (t) => {
  const thin = fixture({}, { maxTransferBytes: 8 * 1024 * 1024 });
  const d = (await thin.run(inq(1, 0xb0, 64))).dataIn!;
  t.is(d.readUInt16BE(2), 0x3c);
  t.is(d.length, 64);
  t.is(d[4] & 1, 0); // WSNZ 0: 0 blocks means to the end
  t.is(d[5], 255); // MAXIMUM COMPARE AND WRITE LENGTH (512-byte blocks: 255, the field's maximum)
  t.is(d.readUInt16BE(6), 1); // granularity: the memory backstore reports no physical block
  t.true(d.subarray(44, 64).equals(Buffer.alloc(20))); // no WRITE ATOMIC fields
  t.is(d.readUInt32BE(8), 16384); // max transfer (blocks)
  t.is(d.readUInt32BE(12), 2048); // optimal
  t.is(d.readUInt32BE(20), 1024 * 1024); // max unmap LBA count
  t.is(d.readUInt32BE(24), 256); // max unmap descriptors
  t.is(Number(d.readBigUInt64BE(36)), 0xffff); // max write same
  const full = fixture({ thinProvisioned: false });
  const e = (await full.run(inq(1, 0xb0, 64))).dataIn!;
  t.is(e.readUInt32BE(20), 0);
  t.is(e.readUInt32BE(24), 0);
});

test('VPD B1h: non-rotating; B2h: LBPU/LBPWS/LBPWS10/LBPRZ and thin type only when thin', async (t) => {
  const f = fixture();
  const b1 = (await f.run(inq(1, 0xb1, 64))).dataIn!;
  t.is(b1.readUInt16BE(2), 0x3c);
  t.is(b1.readUInt16BE(4), 1);
  const b2 = (await f.run(inq(1, 0xb2, 64))).dataIn!;
  t.is(b2.readUInt16BE(2), 4);
  t.is(b2[5], 0xe4);
  t.is(b2[6] & 7, 2);
  const full = fixture({ thinProvisioned: false });
  const c2 = (await full.run(inq(1, 0xb2, 64))).dataIn!;
  t.is(c2[5], 0);
  t.is(c2[6] & 7, 0);
});

test('LUN without a logical unit: INQUIRY qualifier 011b type 1Fh; other commands LU NOT SUPPORTED', async (t) => {
  const f = fixture();
  const r = await f.run(inq(0, 0, 96), { lun: 7 });
  good(t, r);
  t.is(r.dataIn![0], 0x7f);
  sense(t, await f.run([0, 0, 0, 0, 0, 0], { lun: 7 }), ILLEGAL, 0x25, 0);
  sense(t, await f.run([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { lun: 7 }), ILLEGAL, 0x25, 0);
  sense(t, await f.run(inq(1, 0x80, 96), { lun: 7 }), ILLEGAL, 0x25, 0);
  // REQUEST SENSE reports it as sense data with GOOD status
  const rs = await f.run([0x03, 0, 0, 0, 18, 0], { lun: 7 });
  good(t, rs);
  t.deepEqual([rs.dataIn![2], rs.dataIn![12], rs.dataIn![13]], [ILLEGAL, 0x25, 0]);
});
