/**
 * Flow control and no silent wedge (issue 7, rows 2-4), against nodetgt running as a child process (its RSS is
 * read from /proc, all worker threads included):
 * - a client that asks for 1,280 READs of 1 MiB and never reads them: the target stops reading from it, keeps
 *   its RSS bounded, drops it once no send progress is made, and another session keeps its QD1 latency;
 * - a WRITE the target cannot execute (out of range, longer than the Block Limits maximum) gets CHECK
 *   CONDITION before any R2T is sent and without its data being kept; unsolicited data past the per-session
 *   bound gets TASK SET FULL;
 * - after every Reject the session goes on (the next command is answered) or the connection is closed.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { TEST_TARGET } from './helpers/target';
import {
  frame,
  encodeNopOut,
  encodeScsiCommand,
  encodeDataOut,
  encodeTaskMgmtRequest,
} from '../src/pdu/serializer';
import { decodeReject, type Pdu } from '../src/pdu/pdu';
import { crc32cRef } from '../src/pdu/crc32c-ref';

const MiB = 1024 * 1024;

let dir = '';
const children: ChildTarget[] = [];

test.before(() => {
  dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'nodetgt-flow-'));
});

test.after.always(async () => {
  for (const c of children) await c.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** `nodetgt serve --config` with one worker (so every session shares it) and the given extra settings. */
async function startChild(name: string, extra: Record<string, unknown> = {}): Promise<ChildTarget> {
  const child = await startChildTargetWithConfig(
    {
      workers: 1,
      targets: [{ name: TEST_TARGET, luns: [{ lun: 0, path: path.join(dir, `${name}.img`), size: '256M' }] }],
      ...extra,
    },
    { env: { NODETGT_LOG: process.env.FLOW_LOG ?? 'info' } },
  );
  children.push(child);
  return child;
}

/** Resident set of the target process (all its threads), in MB. */
function rssMB(c: ChildTarget): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${c.proc.pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function session(c: ChildTarget, keys?: Array<[string, string]>): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(c.port);
  const r = await ini.login({ targetName: TEST_TARGET, keys });
  if (r.status !== 0) throw new Error(`login failed: 0x${r.status.toString(16)}`);
  return ini;
}

function keysWith(over: Record<string, string>): Array<[string, string]> {
  return defaultOperationalKeys().map(([k, v]): [string, string] => [k, over[k] ?? v]);
}

function rw10(op: 0x28 | 0x2a, lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16);
  cdb[0] = op;
  cdb.writeUInt32BE(lba, 2);
  cdb.writeUInt16BE(blocks, 7);
  return cdb;
}

function write16(lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x8a;
  cdb.writeBigUInt64BE(BigInt(lba), 2);
  cdb.writeUInt32BE(blocks >>> 0, 10);
  return cdb;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * QD1 4 KiB READ latency (ms): the lowest of 3 medians of `n` reads each, so that a burst of load from other
 * processes on this shared machine does not decide the comparison.
 */
async function qd1Latency(ini: TestInitiator, n: number): Promise<number> {
  const medians: number[] = [];
  for (let i = 0; i < 3; i++) medians.push(await qd1Median(ini, n));
  return Math.min(...medians);
}

/** Median latency (ms) of `n` QD1 4 KiB READs. */
async function qd1Median(ini: TestInitiator, n: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = await ini.scsi(rw10(0x28, (i * 8) % 4096, 8), { edtl: 4096, read: true });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 0) throw new Error(`QD1 READ failed: status ${r.status}`);
  }
  return median(times);
}

/** Send a SCSI command PDU by hand (no waiting); returns its CmdSN. */
function sendCommand(
  ini: TestInitiator,
  cdb: Buffer,
  o: { edtl: number; read?: boolean; write?: boolean; final?: boolean; data?: Buffer; itt?: number },
): number {
  const cmdSN = ini.cmdSN++;
  ini.send(
    encodeScsiCommand({
      final: o.final ?? true,
      read: !!o.read,
      write: !!o.write,
      attr: 1,
      itt: ini.byHand(o.itt ?? ini.itt++),
      expectedDataTransferLength: o.edtl,
      cmdSN,
      expStatSN: ini.expStatSN,
      cdb,
    }),
    o.data ?? null,
  );
  return cmdSN;
}

/** The header of one Data-Out PDU (ttt 0xffffffff: unsolicited). */
function dataOut(
  ini: TestInitiator,
  f: { itt: number; ttt: number; dataSN: number; offset: number; final: boolean },
): Buffer {
  return encodeDataOut({
    final: f.final,
    itt: f.itt,
    ttt: f.ttt,
    expStatSN: ini.expStatSN,
    dataSN: f.dataSN,
    bufferOffset: f.offset,
  });
}

/** A WRITE(10) of 512 KiB without data: the target answers with an R2T, which is returned. */
async function writeAwaitingR2t(t: ExecutionContext, ini: TestInitiator, itt: number): Promise<Pdu | null> {
  sendCommand(ini, rw10(0x2a, 0, 1024), { edtl: 512 * 1024, write: true, itt });
  const r2t = await nextPdu(ini, 5000);
  t.is(r2t?.opcode, 0x31);
  return r2t;
}

/** Next PDU that is not a NOP-In. */
async function nextPdu(ini: TestInitiator, ms: number): Promise<Pdu | null> {
  const end = Date.now() + ms;
  for (;;) {
    const p = await ini.next(Math.max(1, end - Date.now()));
    if (!p || p.opcode !== 0x20) return p;
  }
}

/**
 * After a Reject: a TEST UNIT READY with the next CmdSN must be answered, or the connection closed, within 10 s.
 */
async function goesOnOrCloses(t: ExecutionContext, ini: TestInitiator): Promise<'answered' | 'closed'> {
  const t0 = Date.now();
  if (!ini.closed) sendCommand(ini, Buffer.alloc(6), { edtl: 0 });
  for (;;) {
    const p = await nextPdu(ini, Math.max(1, 10000 - (Date.now() - t0)));
    if (p === null) {
      if (ini.closed) return 'closed';
      t.fail(`neither an answer nor a close within 10 s (waited ${Date.now() - t0} ms)`);
      return 'closed';
    }
    if (p.opcode === 0x21) return 'answered';
  }
}

test.serial('a client that never reads: RSS stays bounded, other sessions keep their latency', async (t) => {
  const c = await startChild('hog', { sendTimeout: 6 });
  const healthy = await session(c);
  await qd1Median(healthy, 20); // warm-up
  const before = await qd1Latency(healthy, 50);
  const rssBefore = rssMB(c);

  const hog = await session(c, keysWith({ MaxRecvDataSegmentLength: '262144' }));
  hog.socket.pause(); // never reads another byte
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMB(c))), 50);
  // 1,280 READs of 1 MiB, in bursts, CmdSN after CmdSN.
  for (let i = 0; i < 1280; i++) {
    sendCommand(hog, rw10(0x28, (i % 200) * 2048, 2048), { edtl: MiB, read: true });
    if (i % 64 === 63) await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 300));
  const during = await qd1Latency(healthy, 50);
  peak = Math.max(peak, rssMB(c));
  // The target gives up on the hog once nothing drains for sendTimeout (6 s).
  // A paused client does not see the close: after sendTimeout, a write of its own finds the connection reset.
  await new Promise((r) => setTimeout(r, 7000));
  hog.send(
    encodeNopOut({ immediate: true, itt: hog.byHand(1), ttt: 0xffffffff, cmdSN: hog.cmdSN, expStatSN: 0 }),
  );
  const dropped = await Promise.race([
    hog.closedPromise.then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
  ]);
  clearInterval(sampler);
  hog.close();
  const trail: number[] = [];
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    trail.push(Math.round(rssMB(c)));
  }
  t.log(trail.join(' '));
  const rssAfter = rssMB(c);
  t.log(
    `RSS MB: before ${rssBefore.toFixed(0)}, peak ${peak.toFixed(0)}, after ${rssAfter.toFixed(0)}; ` +
      `QD1 4K median ms: before ${before.toFixed(3)}, during ${during.toFixed(3)}`,
  );
  t.true(peak < 400, `peak RSS ${peak.toFixed(0)} MB must stay under 400 MB`);
  // 2x of normal, with a 1 ms floor for this loaded machine's scheduling noise.
  t.true(during <= Math.max(2 * before, before + 1), `QD1 median ${during} ms vs ${before} ms before`);
  if (!dropped)
    t.log(
      c
        .log()
        .split('\n')
        .filter((l) => /send|drop|clos/.test(l))
        .slice(-20)
        .join('\n'),
    );
  t.true(dropped, 'the connection that made no send progress was dropped');
  t.true(rssAfter < rssBefore + 150, `RSS after the hog left: ${rssAfter.toFixed(0)} MB`);
  // The healthy session still works after all this.
  t.is((await healthy.scsi(rw10(0x28, 0, 8), { edtl: 4096, read: true })).status, 0);
  healthy.close();
  await c.stop();
});

let shared: ChildTarget | null = null;
async function target(): Promise<ChildTarget> {
  shared ??= await startChild('shared', { maxUnsolicitedBytes: 512 * 1024 });
  return shared;
}

/** Collect PDUs for a command until its SCSI Response; counts R2Ts. */
async function awaitResponse(
  ini: TestInitiator,
  ms = 10000,
): Promise<{ r2ts: number; response: Pdu | null }> {
  let r2ts = 0;
  for (;;) {
    const p = await nextPdu(ini, ms);
    if (!p) return { r2ts, response: null };
    if (p.opcode === 0x31) r2ts++;
    if (p.opcode === 0x21) {
      ini.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
      return { r2ts, response: p };
    }
  }
}

function senseOf(p: Pdu): { key: number; asc: number; ascq: number } {
  const s = p.data.subarray(2);
  return { key: s[2] & 0x0f, asc: s[12], ascq: s[13] };
}

test.serial(
  'WRITE(16) of 0xFFFFFFFF blocks (EDTL 4 GiB - 1): CHECK CONDITION, no R2T, nothing kept',
  async (t) => {
    const c = await target();
    const ini = await session(c, keysWith({ MaxOutstandingR2T: '65535', MaxBurstLength: '16776192' }));
    const rss0 = rssMB(c);
    // With 128 KiB of immediate data and F=0: the rest of the first burst follows as unsolicited Data-Out.
    const itt = ini.itt++;
    const burst = Buffer.alloc(128 * 1024, 0xee);
    sendCommand(ini, write16(0, 0xffffffff), {
      edtl: 0xffffffff,
      write: true,
      final: false,
      data: burst,
      itt,
    });
    ini.send(dataOut(ini, { itt, ttt: 0xffffffff, dataSN: 0, offset: 128 * 1024, final: true }), burst);
    const { r2ts, response } = await awaitResponse(ini);
    t.truthy(response, 'answered');
    t.is(r2ts, 0, 'no R2T');
    t.is(response!.bhs[3], 0x02, 'CHECK CONDITION');
    t.deepEqual(
      senseOf(response!),
      { key: 0x05, asc: 0x21, ascq: 0x00 },
      'ILLEGAL REQUEST, LBA OUT OF RANGE',
    );
    const rss1 = rssMB(c);
    t.log(`RSS MB: ${rss0.toFixed(0)} -> ${rss1.toFixed(0)}`);
    t.true(rss1 < rss0 + 64, 'RSS stays flat');
    // In range, but longer than the Block Limits MAXIMUM TRANSFER LENGTH (16 MiB): INVALID FIELD IN CDB, no R2T.
    const blocks = (16 * MiB) / 512 + 1;
    sendCommand(ini, write16(0, blocks), { edtl: blocks * 512, write: true });
    const long = await awaitResponse(ini);
    t.is(long.r2ts, 0, 'no R2T for the too-long transfer');
    t.is(long.response?.bhs[3], 0x02);
    t.deepEqual(senseOf(long.response!), { key: 0x05, asc: 0x24, ascq: 0x00 });
    // The session goes on: a normal WRITE and READ.
    const data = Buffer.alloc(8192, 0x5c);
    t.is((await ini.scsi(rw10(0x2a, 100, 16), { edtl: 8192, write: true, data })).status, 0);
    t.deepEqual((await ini.scsi(rw10(0x28, 100, 16), { edtl: 8192, read: true })).data, data);
    ini.close();
  },
);

test.serial(
  'unsolicited data past the per-session bound gets TASK SET FULL and is not written',
  async (t) => {
    const c = await target(); // maxUnsolicitedBytes: 512 KiB
    const ini = await session(c);
    // Leave CmdSN n open so that the next three WRITEs wait, each holding 256 KiB of immediate data.
    const gap = ini.cmdSN++;
    const itts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const itt = ini.itt++;
      itts.push(itt);
      sendCommand(ini, rw10(0x2a, 1000 + i * 512, 512), {
        edtl: 256 * 1024,
        write: true,
        data: Buffer.alloc(256 * 1024, 0x30 + i),
        itt,
      });
    }
    // Fill the gap: everything runs in order.
    ini.send(
      encodeScsiCommand({
        final: true,
        attr: 1,
        itt: ini.byHand(ini.itt++),
        expectedDataTransferLength: 0,
        cmdSN: gap,
        expStatSN: ini.expStatSN,
        cdb: Buffer.alloc(6),
      }),
    );
    const status = new Map<number, number>();
    while (status.size < 4) {
      const r = await awaitResponse(ini);
      if (!r.response) break;
      status.set(r.response.bhs.readUInt32BE(16), r.response.bhs[3]);
    }
    t.deepEqual(
      itts.map((i) => status.get(i)),
      [0x00, 0x00, 0x28],
      'the first two fit the 512 KiB bound, the third gets TASK SET FULL',
    );
    const third = await ini.scsi(rw10(0x28, 2024, 512), { edtl: 256 * 1024, read: true });
    t.false(third.data.includes(0x32), 'the refused WRITE wrote nothing');
    // And the bound is released: the same WRITE now succeeds.
    const again = await ini.scsi(rw10(0x2a, 2024, 512), {
      edtl: 256 * 1024,
      write: true,
      data: Buffer.alloc(256 * 1024, 0x32),
    });
    t.is(again.status, 0);
    ini.close();
  },
);

test.serial(
  'oversized immediate data: Reject, then an answered command or a closed connection within 10 s',
  async (t) => {
    const c = await target();
    const ini = await session(c);
    const max = 262144; // the target's MaxRecvDataSegmentLength
    sendCommand(ini, rw10(0x2a, 0, (max + 512) / 512), {
      edtl: max + 512,
      write: true,
      data: Buffer.alloc(max + 512),
    });
    const rej = await nextPdu(ini, 5000);
    t.is(rej?.opcode, 0x3f);
    t.is(decodeReject(rej!).reason, 0x04);
    const t0 = Date.now();
    const outcome = await goesOnOrCloses(t, ini);
    t.log(`${outcome} after ${Date.now() - t0} ms`);
  },
);

test.serial('a rejected command whose CmdSN the initiator resends: the session goes on', async (t) => {
  const c = await target();
  const ini = await session(c);
  const cmdSN = sendCommand(ini, rw10(0x2a, 0, 513), {
    edtl: 513 * 512,
    write: true,
    data: Buffer.alloc(513 * 512),
  });
  t.is((await nextPdu(ini, 5000))?.opcode, 0x3f);
  ini.cmdSN = cmdSN; // plug the gap with the same CmdSN (RFC 7143 sec. 6.3)
  t.is((await ini.scsi(Buffer.alloc(6), { edtl: 0 })).status, 0);
  t.is((await ini.scsi(Buffer.alloc(6), { edtl: 0 })).status, 0);
  ini.close();
});

test.serial('a rejected command plugged by ABORT TASK: the commands behind it are answered', async (t) => {
  const c = await target();
  const ini = await session(c);
  const itt = ini.itt++;
  const cmdSN = sendCommand(ini, rw10(0x2a, 0, 513), {
    edtl: 513 * 512,
    write: true,
    data: Buffer.alloc(513 * 512),
    itt,
  });
  t.is((await nextPdu(ini, 5000))?.opcode, 0x3f);
  sendCommand(ini, Buffer.alloc(6), { edtl: 0 }); // waits behind the gap
  ini.send(
    encodeTaskMgmtRequest({
      immediate: true,
      function: 1,
      itt: ini.byHand(ini.itt++),
      referencedTaskTag: itt,
      cmdSN: ini.cmdSN,
      expStatSN: ini.expStatSN,
      refCmdSN: cmdSN,
    }),
  );
  const seen: number[] = [];
  while (seen.length < 2) {
    const p = await nextPdu(ini, 5000);
    if (!p) break;
    seen.push(p.opcode);
    if (p.opcode === 0x22) t.is(p.bhs[2], 0, 'ABORT TASK: function complete');
  }
  t.deepEqual([...seen].sort(), [0x21, 0x22], 'TMF response and the waiting command answered');
  ini.close();
});

test.serial('every other Reject leaves the session going on or closed', async (t) => {
  const c = await target();
  const outcomes: string[] = [];
  const check = async (
    name: string,
    provoke: (ini: TestInitiator) => Promise<void> | void,
    reason: number,
  ) => {
    const ini = await session(c);
    await provoke(ini);
    const rej = await nextPdu(ini, 5000);
    t.is(rej?.opcode, 0x3f, `${name}: Reject`);
    if (rej) t.is(decodeReject(rej).reason, reason, `${name}: reason`);
    const o = await goesOnOrCloses(t, ini);
    outcomes.push(`${name}: ${o}`);
    ini.close();
  };
  // ITT of a task still in progress (a WRITE waiting for its R2T data).
  await check(
    'task in progress',
    async (ini) => {
      await writeAwaitingR2t(t, ini, 7777);
      sendCommand(ini, Buffer.alloc(6), { edtl: 0, itt: 7777 });
    },
    0x07,
  );
  // Data-Out answering an R2T with a Target Transfer Tag the target never sent.
  await check(
    'unknown TTT',
    async (ini) => {
      await writeAwaitingR2t(t, ini, 4242);
      ini.send(
        dataOut(ini, { itt: 4242, ttt: 0x1234567, dataSN: 0, offset: 0, final: true }),
        Buffer.alloc(4096),
      );
    },
    0x04,
  );
  // Malformed AHS on a SCSI command.
  await check(
    'format error',
    (ini) => {
      const bhs = encodeScsiCommand({
        final: true,
        attr: 1,
        itt: ini.byHand(ini.itt++),
        expectedDataTransferLength: 0,
        cmdSN: ini.cmdSN++,
        expStatSN: ini.expStatSN,
        cdb: Buffer.alloc(6),
      });
      bhs[4] = 1; // TotalAHSLength 1 word: an AHS header announcing more than there is
      ini.sendRaw(Buffer.concat([bhs, Buffer.from([0x00, 0x40, 0x01, 0x00])]));
    },
    0x09,
  );
  t.log(outcomes.join('; '));
});

test.serial('a Data-Out that fails its data digest: Reject, then the command is answered', async (t) => {
  const c = await target();
  const ini = await session(c, keysWith({ DataDigest: 'CRC32C', InitialR2T: 'Yes', ImmediateData: 'No' }));
  t.true(ini.dataDigest);
  const itt = ini.itt++;
  sendCommand(ini, rw10(0x2a, 0, 16), { edtl: 8192, write: true, itt });
  const r2t = await nextPdu(ini, 5000);
  t.is(r2t?.opcode, 0x31);
  const ttt = r2t!.bhs.readUInt32BE(20);
  const data = Buffer.alloc(4096, 0x11);
  const first = frame(dataOut(ini, { itt, ttt, dataSN: 0, offset: 0, final: false }), data, {
    headerDigest: false,
    dataDigest: true,
    crc32c: crc32cRef,
  });
  const wire = Buffer.concat(first);
  wire[wire.length - 1] ^= 0xff;
  ini.sendRaw(wire);
  const rej = await nextPdu(ini, 5000);
  t.is(rej?.opcode, 0x3f);
  t.is(decodeReject(rej!).reason, 0x02);
  ini.send(dataOut(ini, { itt, ttt, dataSN: 1, offset: 4096, final: true }), data);
  const { response } = await awaitResponse(ini, 5000);
  t.truthy(response, 'the command is answered');
  t.is(response!.bhs[3], 0x02);
  t.deepEqual(senseOf(response!), { key: 0x0b, asc: 0x47, ascq: 0x05 }, 'PROTOCOL SERVICE CRC ERROR');
  t.is((await ini.scsi(Buffer.alloc(6), { edtl: 0 })).status, 0, 'the session goes on');
  ini.close();
});
