/** Header and data digests (CRC32C) once negotiated: with a real initiator, with ours, and when corrupted. */
import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { run } from './helpers/run';
import { encodeNopOut, frame } from '../src/pdu/serializer';
import { crc32cRef } from '../src/pdu/crc32c-ref';
import { decodeReject } from '../src/pdu/pdu';

test('QEMU with HeaderDigest=CRC32C writes and reads back a pattern', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    const opts = `driver=iscsi,transport=tcp,portal=127.0.0.1:${tt.port},target=${TEST_TARGET},lun=0,header-digest=crc32c`;
    const r = await run(
      'qemu-io',
      ['--image-opts', opts, '-c', 'write -P 0x3c 4096 1M', '-c', 'read -P 0x3c 4096 1M'],
      60_000,
    );
    t.is(r.code, 0, r.stderr + r.stdout);
    t.regex(r.stdout, /read 1048576\/1048576 bytes/);
    t.notRegex(r.stdout, /Pattern verification failed/);
  } finally {
    await tt.close();
  }
});

test('both digests: our initiator writes and reads; a corrupted data digest gets Reject (data digest error)', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    const ini = await TestInitiator.connect(tt.port);
    const keys = defaultOperationalKeys().map(([k, v]): [string, string] =>
      k === 'HeaderDigest' || k === 'DataDigest' ? [k, 'CRC32C'] : [k, v],
    );
    const lr = await ini.login({ targetName: TEST_TARGET, keys });
    t.is(lr.status, 0);
    t.is(lr.keys.get('HeaderDigest'), 'CRC32C');
    t.is(lr.keys.get('DataDigest'), 'CRC32C');
    t.true(ini.headerDigest && ini.dataDigest);
    const data = Buffer.alloc(65536 + 512, 0x77);
    const w = Buffer.alloc(16);
    w[0] = 0x2a;
    w.writeUInt16BE(data.length / 512, 7);
    t.is((await ini.scsi(w, { edtl: data.length, write: true, data, immediate: 8192 })).status, 0);
    const rd = Buffer.from(w);
    rd[0] = 0x28;
    const back = await ini.scsi(rd, { edtl: data.length, read: true });
    t.is(back.status, 0);
    t.true(back.data.equals(data));
    // A NOP-Out whose data digest is wrong.
    const iov = frame(
      encodeNopOut({ immediate: true, itt: 42, ttt: 0xffffffff, cmdSN: ini.cmdSN, expStatSN: ini.expStatSN }),
      Buffer.from('hello world!'),
      { headerDigest: true, dataDigest: true, crc32c: crc32cRef },
    );
    const wire = Buffer.concat(iov);
    wire[wire.length - 1] ^= 0xff;
    ini.sendRaw(wire);
    const p = await ini.next();
    t.is(p?.opcode, 0x3f);
    t.is(decodeReject(p!).reason, 0x02);
    // The connection survives a data digest error.
    const nop = await ini.nop(Buffer.from('still here'));
    t.is(nop?.data.toString(), 'still here');
    ini.close();
  } finally {
    await tt.close();
  }
});
