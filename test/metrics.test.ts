import test from 'ava';
import * as http from 'node:http';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';

function get(port: number, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

const value = (body: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1]);

test('the Prometheus endpoint sums every worker: logins, failures, PDUs, SCSI bytes', async (t) => {
  const tt = await startTestTarget({ workers: 2, extra: { metrics: '127.0.0.1:0' } });
  try {
    const port = tt.target.metricsPort;
    t.true(port > 0, 'metrics port');
    const before = await get(port, '/metrics');
    t.is(before.status, 200);
    t.regex(before.body, /# TYPE nodetgt_tgt_login_accepts_total counter/);
    t.is(value(before.body, 'nodetgt_tgt_login_accepts_total'), 0);
    const a = await TestInitiator.connect(tt.port);
    t.is((await a.login({ targetName: TEST_TARGET })).status, 0);
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x28;
    cdb.writeUInt16BE(8, 7);
    t.is((await a.scsi(cdb, { edtl: 4096, read: true })).status, 0);
    const bad = await TestInitiator.connect(tt.port);
    t.is((await bad.login({ targetName: 'iqn.2026-11.io.nodetgt.test:none' })).status, 0x0203);
    await bad.closedPromise;
    const after = await get(port, '/metrics');
    t.is(value(after.body, 'nodetgt_tgt_login_accepts_total'), 1);
    t.is(value(after.body, 'nodetgt_tgt_login_other_fails_total'), 1);
    t.is(value(after.body, 'nodetgt_scsi_read_bytes_total'), 4096);
    t.is(value(after.body, 'nodetgt_ssn_active'), 1);
    t.true(value(after.body, 'nodetgt_ssn_cmd_pdus_total') >= 2);
    t.is((await get(port, '/nope')).status, 404);
    a.close();
  } finally {
    await tt.close();
  }
});
