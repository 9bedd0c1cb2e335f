/**
 * The QD1 send path (Connection.sendAlone): an answer while no other command is on the connection leaves in one
 * uncorked write, copied into one buffer when it is a header with up to 8 KiB of data. Checked on the wire: READs
 * of sizes either side of the copy limit, without and with both digests, return what was written, one command at
 * a time and then many at once (the corked path), with StatSN in order and every data digest right.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { cdb10 } from './scsi-helpers';

const SIZES = [512, 4096, 8192, 8704, 65536];

async function session(t: ExecutionContext, tt: TestTarget, name: string, digests: boolean) {
  const ini = await TestInitiator.connect(tt.port);
  const keys = defaultOperationalKeys().map(([k, v]): [string, string] =>
    digests && (k === 'HeaderDigest' || k === 'DataDigest') ? [k, 'CRC32C'] : [k, v],
  );
  const lr = await ini.login({
    targetName: TEST_TARGET,
    initiatorName: `iqn.2026-11.io.nodetgt.test:${name}`,
    keys,
  });
  t.is(lr.status, 0);
  t.is(ini.dataDigest, digests);
  return ini;
}

for (const digests of [false, true]) {
  test(`one-at-a-time and concurrent READs of ${SIZES.join('/')} bytes come back as written (digests ${digests ? 'on' : 'off'})`, async (t) => {
    const tt = await startTestTarget({ workers: 1 });
    try {
      const ini = await session(t, tt, `qd1-send-${digests}`, digests);
      let lba = 0;
      const placed: { lba: number; data: Buffer }[] = [];
      for (const size of SIZES) {
        const data = randomBytes(size);
        const w = await ini.scsi(cdb10(0x2a, lba, size / 512), { edtl: size, write: true, data });
        t.is(w.status, 0);
        placed.push({ lba, data });
        lba += size / 512 + 8;
      }
      // One at a time, twice over: each answer goes out alone.
      let lastStatSN = -1;
      for (let round = 0; round < 2; round++)
        for (const { lba: at, data } of placed) {
          const r = await ini.scsi(cdb10(0x28, at, data.length / 512), { edtl: data.length, read: true });
          t.is(r.status, 0);
          t.true(r.data.equals(data), `${data.length} bytes at LBA ${at}`);
          if (lastStatSN >= 0) t.is(r.statSN, lastStatSN + 1, 'StatSN in order');
          lastStatSN = r.statSN;
        }
      // Many at once: the corked path, same bytes.
      const all = await Promise.all(
        [...placed, ...placed].map(({ lba: at, data }) =>
          ini.scsi(cdb10(0x28, at, data.length / 512), { edtl: data.length, read: true }),
        ),
      );
      all.forEach((r, i) => t.true(r.data.equals(placed[i % placed.length].data)));
      await ini.logout();
    } finally {
      await tt.close();
    }
  });
}
