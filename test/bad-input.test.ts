/**
 * Bad input from a client gets the protocol's answer (Reject, login status, NotUnderstood) or a clean close,
 * counted in the metrics; a healthy session on the same target keeps working throughout.
 */
import test from 'ava';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { encodeNopOut, encodeLoginRequest } from '../src/pdu/serializer';
import { encodeTextData } from '../src/login/text';
import { readCounters } from '../src/metrics/counters';
import { decodeReject } from '../src/pdu/pdu';

let tt: TestTarget;
let healthy: TestInitiator;

test.before(async () => {
  tt = await startTestTarget({ workers: 2 });
  healthy = await TestInitiator.connect(tt.port);
  const r = await healthy.login({ targetName: TEST_TARGET });
  if (r.status !== 0) throw new Error(`healthy login failed: ${r.status}`);
});

test.after.always(async () => {
  healthy?.close();
  await tt?.close();
});

async function healthyStillWorks(t: import('ava').ExecutionContext): Promise<void> {
  const p = await healthy.nop(Buffer.from('ping'));
  t.truthy(p, 'healthy session answered');
  t.is(p!.opcode, 0x20);
  t.is(p!.data.toString(), 'ping');
}

const counter = (name: Parameters<typeof readCounters>[0] extends unknown ? string : never) =>
  (readCounters(tt.target.counters).total as Record<string, number>)[name];

test.serial('unknown opcode in full feature phase gets Reject (command not supported)', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
  const bhs = Buffer.alloc(48);
  bhs[0] = 0x1c; // not an initiator opcode
  bhs.writeUInt32BE(77, 16);
  ini.send(bhs);
  const p = await ini.next();
  t.truthy(p);
  t.is(p!.opcode, 0x3f);
  t.is(decodeReject(p!).reason, 0x05);
  t.deepEqual(p!.data.subarray(0, 48), bhs, 'Reject carries the offending header');
  // The session survives.
  const nop = await ini.nop();
  t.is(nop?.opcode, 0x20);
  await healthyStillWorks(t);
  ini.close();
});

test.serial('a data segment longer than MaxRecvDataSegmentLength gets Reject (protocol error)', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  const lr = await ini.login({ targetName: TEST_TARGET });
  t.is(lr.status, 0);
  const ours = Number(lr.keys.get('MaxRecvDataSegmentLength'));
  t.true(ours >= 262144);
  const before = counter('instSsnFormatErrors');
  ini.send(
    encodeNopOut({ immediate: true, itt: 9, ttt: 0xffffffff, cmdSN: ini.cmdSN, expStatSN: ini.expStatSN }),
    Buffer.alloc(ours + 4, 0xab),
  );
  const p = await ini.next();
  t.is(p?.opcode, 0x3f);
  t.is(decodeReject(p!).reason, 0x04);
  t.is(counter('instSsnFormatErrors'), before + 1);
  await healthyStillWorks(t);
  ini.close();
});

test.serial('a truncated PDU followed by close leaves the target and other sessions unharmed', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
  const bhs = encodeNopOut({
    immediate: true,
    itt: 5,
    ttt: 0xffffffff,
    cmdSN: ini.cmdSN,
    expStatSN: ini.expStatSN,
  });
  bhs.writeUIntBE(1000, 5, 3); // announces 1000 bytes of data
  ini.sendRaw(Buffer.concat([bhs, Buffer.alloc(100)]));
  ini.socket.end();
  await ini.closedPromise;
  await healthyStillWorks(t);
  // A new session still logs in.
  const again = await TestInitiator.connect(tt.port);
  t.is((await again.login({ targetName: TEST_TARGET })).status, 0);
  again.close();
});

test.serial('a login with an unknown key gets NotUnderstood and still succeeds', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  const { defaultOperationalKeys } = await import('./helpers/initiator');
  const r = await ini.login({
    targetName: TEST_TARGET,
    keys: [...defaultOperationalKeys(), ['NoSuchKey', 'Whatever'], ['X-com.example.Vendor', '1']],
  });
  t.is(r.status, 0);
  t.is(r.keys.get('NoSuchKey'), 'NotUnderstood');
  t.is(r.keys.get('X-com.example.Vendor'), 'NotUnderstood');
  await healthyStillWorks(t);
  ini.close();
});

test.serial('a login to a target that does not exist fails with 0x0203 (not found)', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  const r = await ini.login({ targetName: 'iqn.2026-11.io.nodetgt.test:nope' });
  t.is(r.status, 0x0203);
  await ini.closedPromise;
  t.true(ini.closed);
  await healthyStillWorks(t);
});

test.serial('a login without InitiatorName fails with 0x0207 (missing parameter)', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  ini.send(
    encodeLoginRequest({
      transit: true,
      continue: false,
      csg: 1,
      nsg: 3,
      isid: Buffer.from([0x80, 0, 0, 0, 0, 1]),
      itt: 1,
      cmdSN: 1,
      expStatSN: 0,
    }),
    encodeTextData([['TargetName', TEST_TARGET]]),
  );
  const p = await ini.next();
  t.is(p?.opcode, 0x23);
  t.is(p!.bhs.readUInt16BE(36), 0x0207);
  await ini.closedPromise;
  await healthyStillWorks(t);
});

test.serial('garbage instead of a login is dropped, counted, and harms nobody', async (t) => {
  const before = counter('instSsnFormatErrors');
  const ini = await TestInitiator.connect(tt.port);
  ini.sendRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n' + 'z'.repeat(100)));
  await ini.closedPromise;
  t.true(ini.closed);
  t.is(counter('instSsnFormatErrors'), before + 1);
  await healthyStillWorks(t);
});

test.serial('a login PDU with an unsupported version range fails with 0x0205', async (t) => {
  const ini = await TestInitiator.connect(tt.port);
  ini.send(
    encodeLoginRequest({
      transit: true,
      continue: false,
      csg: 1,
      nsg: 3,
      versionMax: 5,
      versionMin: 3,
      isid: Buffer.from([0x80, 0, 0, 0, 0, 2]),
      itt: 1,
      cmdSN: 1,
      expStatSN: 0,
    }),
    encodeTextData([
      ['InitiatorName', 'iqn.2026-11.io.nodetgt.test:v'],
      ['TargetName', TEST_TARGET],
    ]),
  );
  const p = await ini.next();
  t.is(p?.opcode, 0x23);
  t.is(p!.bhs.readUInt16BE(36), 0x0205);
  await ini.closedPromise;
  await healthyStillWorks(t);
});
