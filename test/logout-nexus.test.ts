/**
 * A session that logs out loses its I_T nexus before the Logout Response leaves: a RESERVE(6) it held is free for
 * another initiator the moment the first one hears "logged out", whichever worker serves the other one.
 * Regression: the nexus used to be released when the socket closed, after the response; libiscsi's
 * Reserve6.Logout (which reserves again from a second session right after the logout) failed with RESERVATION
 * CONFLICT in a CI run. Here the first initiator keeps its socket open after the logout, so the old code kept the
 * reservation until its 2-second close timer: every attempt failed.
 */
import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';

const RESERVE6 = Buffer.from([0x16, 0, 0, 0, 0, 0]);

test('RESERVE(6) is released by a session logout before its response: another session reserves at once', async (t) => {
  const tt = await startTestTarget({ workers: 2 });
  try {
    for (let round = 0; round < 5; round++) {
      const a = await TestInitiator.connect(tt.port);
      const b = await TestInitiator.connect(tt.port);
      try {
        for (const [ini, name] of [
          [a, 'a'],
          [b, 'b'],
        ] as const) {
          const r = await ini.login({
            targetName: TEST_TARGET,
            initiatorName: `iqn.2026-12.io.nodetgt.test:${name}${round}`,
          });
          t.is(r.status, 0);
          // The first command of a new nexus may report a unit attention (power on, reset): clear it.
          await ini.scsi(Buffer.alloc(6), { edtl: 0 });
        }
        t.is((await a.scsi(RESERVE6, { edtl: 0 })).status, 0, 'a reserves');
        t.is((await b.scsi(RESERVE6, { edtl: 0 })).status, 0x18, 'b meets RESERVATION CONFLICT');
        const out = await a.logout();
        t.is(out.bhs[2], 0, 'logout succeeds');
        // a's socket stays open: nothing but the logout itself may release the reservation.
        t.is(
          (await b.scsi(RESERVE6, { edtl: 0 })).status,
          0,
          `round ${round}: b reserves right after a's logout`,
        );
        t.is((await b.scsi(Buffer.from([0x17, 0, 0, 0, 0, 0]), { edtl: 0 })).status, 0, 'b releases');
      } finally {
        a.close();
        b.close();
      }
    }
  } finally {
    await tt.close();
  }
});
