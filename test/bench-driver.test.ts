/**
 * The benchmark's lean initiator (bench/lib/driver.ts) against nodetgt: it logs in with digests on or off as
 * asked, keeps its queue full, and what it writes lands. With digests on, the target's parser must have
 * checked header and data digests on the driver's PDUs (counters); with them off, none.
 */
import test from 'ava';
import { startTestTarget, loginAs, TEST_TARGET } from './helpers/target';
import { BenchDriver } from '../bench/lib/driver';
import { readCounters } from '../src/metrics/counters';
import { cdb10 } from './scsi-helpers';

for (const digests of [false, true])
  test(`driver with digests ${digests ? 'on' : 'off'}: 4K and 1 MiB reads and writes complete, writes land`, async (t) => {
    const tt = await startTestTarget({ workers: 1 });
    try {
      const c = () => readCounters(tt.target.counters).total;
      const before = c();
      const d = await BenchDriver.connect({
        host: '127.0.0.1',
        port: tt.port,
        targetName: TEST_TARGET,
        lun: 0,
        digests,
      });
      t.is(d.lunBytes, 64 << 20);
      const jobs = [
        { write: true, bs: 1 << 20, qd: 4, secs: 0.2, step: 1 << 20 },
        { write: false, bs: 1 << 20, qd: 4, secs: 0.2, step: 1 << 20 },
        { write: true, bs: 4096, qd: 16, secs: 0.2, step: 40960 + 4096 },
        { write: false, bs: 4096, qd: 16, secs: 0.2, step: 40960 + 4096 },
      ];
      let commands = 0;
      let writes = 0;
      for (const j of jobs) {
        const r = await d.run(j);
        commands += r.ops;
        if (j.write) writes += r.ops;
        t.true(r.ops >= j.qd, `${j.write ? 'write' : 'read'} ${j.bs}: ${r.ops} ops`);
        t.true(r.driverCpuUs > 0);
      }
      await d.close();
      const after = c();
      const hd = after.pduHeaderDigestsVerified - before.pduHeaderDigestsVerified;
      const dd = after.pduDataDigestsVerified - before.pduDataDigestsVerified;
      if (digests) {
        // Every command PDU carried a header digest, every write immediate data with a data digest.
        t.true(hd >= commands, `header digests verified: ${hd}, commands ${commands}`);
        t.true(dd >= writes, `data digests verified: ${dd}, writes ${writes}`);
      } else {
        t.is(hd, 0);
        t.is(dd, 0);
      }
      // The 1 MiB writes start at offset 0: the driver's 0x5a pattern must be there.
      const ini = await loginAs(tt, 'check');
      const r = await ini.scsi(cdb10(0x28, 0, 8), { edtl: 4096, read: true });
      t.is(r.status, 0);
      t.true(r.data.equals(Buffer.alloc(4096, 0x5a)));
      await ini.logout();
      ini.close();
    } finally {
      await tt.close();
    }
  });
