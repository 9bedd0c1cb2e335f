/**
 * APTPL against the real target process: registrations and a reservation made with APTPL survive `kill -9` and
 * a restart on the same state directory (the portal seeds them before any worker serves the LU), and an APTPL
 * file that cannot be read back whole keeps the LU offline with the file named, rather than serving it with its
 * registrations dropped.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';

const IQN = 'iqn.2026-11.io.nodetgt.test:aptpl';
const INIT_A = 'iqn.2026-11.io.nodetgt.test:holder';
const INIT_B = 'iqn.2026-11.io.nodetgt.test:other';
const ISID_A = Buffer.from('80000000a001', 'hex');
const ISID_B = Buffer.from('80000000b001', 'hex');
const KEY_A = 0x1234_5678_9abcn;
const GOOD = 0;
const CONFLICT = 0x18;
const WRITE_EXCLUSIVE = 1;

function config(stateDir: string): Record<string, unknown> {
  return {
    workers: 2,
    stateDir,
    targets: [
      { name: IQN, luns: [{ lun: 0, backstore: 'file', path: path.join(stateDir, 'disk.img'), size: '4M' }] },
    ],
  };
}

async function session(c: ChildTarget, name: string, isid: Buffer): Promise<TestInitiator> {
  const i = await TestInitiator.connect(c.port);
  const r = await i.login({ initiatorName: name, isid, targetName: IQN });
  if (r.status !== 0) throw new Error(`login of ${name} failed: ${r.status}`);
  return i;
}

/** Send commands until one is not answered with a unit attention (a new session after a restart gets one). */
async function command(i: TestInitiator, cdb: Buffer, data?: Buffer) {
  for (let n = 0; ; n++) {
    const r = await i.scsi(cdb, data ? { edtl: data.length, write: true, data } : { edtl: 4096, read: true });
    if (r.status === 2 && r.sense && (r.sense[2] & 0x0f) === 0x06 && n < 5) continue;
    return r;
  }
}

function prOut(sa: number, type: number, key: bigint, saKey: bigint, flags: number): [Buffer, Buffer] {
  const cdb = Buffer.from([0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0]);
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(key, 0);
  data.writeBigUInt64BE(saKey, 8);
  data[20] = flags;
  return [cdb, data];
}

const prIn = (sa: number) => Buffer.from([0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0, 0]);
const write10 = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
const block = Buffer.alloc(512, 0x5a);

test('APTPL: keys and reservation survive kill -9; a non-holder still meets the reservation', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-aptpl-'));
  let c: ChildTarget | null = null;
  try {
    c = await startChildTargetWithConfig(config(stateDir));
    const a = await session(c, INIT_A, ISID_A);
    const b = await session(c, INIT_B, ISID_B);
    // REGISTER AND IGNORE EXISTING KEY with APTPL, then RESERVE Write Exclusive.
    t.is((await command(a, ...prOut(6, 0, 0n, KEY_A, 0x01))).status, GOOD);
    t.is((await command(a, ...prOut(1, WRITE_EXCLUSIVE, KEY_A, 0n, 0))).status, GOOD);
    t.is((await command(b, write10, block)).status, CONFLICT);
    const workers = [...c.log().matchAll(/\[(t\d+)\] login .*initiator=(\S+)/g)].map(
      (m) => `${m[2]}@${m[1]}`,
    );
    t.log(`sessions: ${workers.join(', ')}`);
    await c.stop('SIGKILL');
    c = null;

    c = await startChildTargetWithConfig(config(stateDir));
    t.regex(c.log(), /persistent reservations restored .*registrations=1 reserved=true/);
    const b2 = await session(c, INIT_B, ISID_B);
    const keys = (await command(b2, prIn(0))).data;
    t.is(keys.readUInt32BE(4), 8);
    t.is(keys.readBigUInt64BE(8), KEY_A);
    const res = (await command(b2, prIn(1))).data;
    t.is(res.readUInt32BE(4), 16);
    t.is(res.readBigUInt64BE(8), KEY_A);
    t.is(res[21] & 0x0f, WRITE_EXCLUSIVE);
    t.is((await command(b2, write10, block)).status, CONFLICT, 'non-holder WRITE');
    // The holder is the same I_T nexus (InitiatorName + ISID) as before the crash: it may write.
    const a2 = await session(c, INIT_A, ISID_A);
    t.is((await command(a2, write10, block)).status, GOOD, 'holder WRITE');
  } finally {
    await c?.stop('SIGKILL');
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test('a corrupt APTPL file keeps the LU offline with the file named; the registrations are not dropped', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-aptpl-'));
  let c: ChildTarget | null = null;
  try {
    c = await startChildTargetWithConfig(config(stateDir));
    const a = await session(c, INIT_A, ISID_A);
    t.is((await command(a, ...prOut(6, 0, 0n, KEY_A, 0x01))).status, GOOD);
    await c.stop('SIGKILL');
    c = null;
    const dir = path.join(stateDir, 'pr');
    const [name] = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
    const file = path.join(dir, name);
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.slice(0, text.length >> 1)); // truncated

    c = await startChildTargetWithConfig(config(stateDir));
    t.true(c.log().includes('LU offline'), c.log());
    t.true(c.log().includes(file), 'the file is named');
    const b = await session(c, INIT_B, ISID_B);
    const r = await command(b, write10, block);
    t.is(r.status, 2, 'LUN 0 is not served');
    t.deepEqual([r.sense![2] & 0x0f, r.sense![12]], [0x05, 0x25]);
    t.is(fs.readFileSync(file, 'utf8'), text.slice(0, text.length >> 1), 'the file is left for the operator');
  } finally {
    await c?.stop('SIGKILL');
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});
