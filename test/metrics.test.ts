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

function getWith(port: number, headers: Record<string, string>): Promise<{ type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', headers }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

const series = (body: string, name: string, labels: string) =>
  Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(body)?.[1]);

test('per LU, per session and latency series; OpenMetrics by Accept; a session vanishes at logout', async (t) => {
  const tt = await startTestTarget({ workers: 2, extra: { metrics: '127.0.0.1:0' } });
  try {
    const port = tt.target.metricsPort;
    const a = await TestInitiator.connect(tt.port);
    t.is((await a.login({ targetName: TEST_TARGET })).status, 0);
    const read = Buffer.alloc(16);
    read[0] = 0x28;
    read.writeUInt16BE(8, 7);
    for (let i = 0; i < 5; i++) t.is((await a.scsi(read, { edtl: 4096, read: true })).status, 0);
    const write = Buffer.alloc(16);
    write[0] = 0x2a;
    write.writeUInt16BE(2, 7);
    t.is((await a.scsi(write, { edtl: 1024, write: true, data: Buffer.alloc(1024, 7) })).status, 0);
    const bad = Buffer.alloc(16);
    bad[0] = 0x28;
    bad.writeUInt32BE(0xfffffff0, 2); // past the end: ILLEGAL REQUEST
    bad.writeUInt16BE(1, 7);
    t.is((await a.scsi(bad, { edtl: 512, read: true })).status, 2);

    const prom = await getWith(port, {});
    t.regex(prom.type, /^text\/plain; version=0\.0\.4/);
    const lu = `target="${TEST_TARGET}",lun="0"`;
    t.is(series(prom.body, 'nodetgt_lu_commands_total', `${lu},op="read"`), 6);
    t.is(series(prom.body, 'nodetgt_lu_commands_total', `${lu},op="write"`), 1);
    t.is(series(prom.body, 'nodetgt_lu_read_bytes_total', lu), 5 * 4096);
    t.is(series(prom.body, 'nodetgt_lu_written_bytes_total', lu), 1024);
    t.is(series(prom.body, 'nodetgt_lu_check_conditions_total', `${lu},sense_key="illegal_request"`), 1);
    t.is(series(prom.body, 'nodetgt_lu_commands_in_flight', lu), 0);
    t.is(series(prom.body, 'nodetgt_lu_latency_seconds_count', `${lu},op="read"`), 6);
    t.is(series(prom.body, 'nodetgt_lu_latency_seconds_bucket', `${lu},op="read",le="\\+Inf"`), 6);
    t.true(series(prom.body, 'nodetgt_lu_latency_seconds_sum', `${lu},op="read"`) > 0);
    t.is(series(prom.body, 'nodetgt_lu_backstore_latency_seconds_count', `${lu},op="read"`), 5);
    t.is(series(prom.body, 'nodetgt_lu_backstore_latency_seconds_count', `${lu},op="write"`), 1);
    const ssn = `target="${TEST_TARGET}",initiator="iqn.2026-11.io.nodetgt.test:initiator",isid="[0-9a-f]+"`;
    t.is(series(prom.body, 'nodetgt_session_cmd_pdus_total', ssn), 7, 'the seven commands');
    t.is(series(prom.body, 'nodetgt_session_connections', ssn), 1);
    t.is(series(prom.body, 'nodetgt_target_sessions', `target="${TEST_TARGET}"`), 1);
    t.regex(prom.body, /^nodetgt_worker_event_loop_utilization\{thread="portal"\} /m);
    t.regex(prom.body, /^nodetgt_process_resident_memory_bytes \d+/m);
    t.regex(prom.body, /^nodetgt_tgt_login_accepts_total 1$/m);

    const om = await getWith(port, {
      accept: 'application/openmetrics-text; version=1.0.0, text/plain;q=0.5',
    });
    t.regex(om.type, /^application\/openmetrics-text/);
    t.true(om.body.endsWith('# EOF\n'));
    t.regex(om.body, /^# TYPE nodetgt_tgt_login_accepts counter$/m);
    t.regex(om.body, /^nodetgt_tgt_login_accepts_total 1$/m);
    const junk = await getWith(port, { accept: ';;;,=q=x garbage/ application/openmetrics-text;q=abc' });
    t.regex(junk.type, /^text\/plain/);
    t.regex(junk.body, /^nodetgt_tgt_login_accepts_total 1$/m);

    const pdus = series(prom.body, 'nodetgt_session_cmd_pdus_total', ssn);
    await a.logout();
    a.close();
    await new Promise((r) => setTimeout(r, 200));
    const after = (await getWith(port, {})).body;
    t.notRegex(after, /^nodetgt_session_cmd_pdus_total\{/m, 'the session series are gone');
    t.is(series(after, 'nodetgt_target_sessions', `target="${TEST_TARGET}"`), 0);
    t.true(
      series(after, 'nodetgt_target_cmd_pdus_total', `target="${TEST_TARGET}"`) >= pdus,
      'target totals keep it',
    );
  } finally {
    await tt.close();
  }
});

test('a metrics port already in use is a clear start-up error', async (t) => {
  const blocker = http.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const port = (blocker.address() as { port: number }).port;
  try {
    const e = await t.throwsAsync(startTestTarget({ extra: { metrics: `127.0.0.1:${port}` } }));
    t.regex(e!.message, new RegExp(`metrics 127\\.0\\.0\\.1:${port}: address already in use`));
  } finally {
    blocker.close();
  }
});
