/**
 * The adaptive look before the event loop sleeps (native/idlepoll.cc), on this test's own thread. A child process
 * echoes over a loopback socket: answered at once, the looks catch the echo and the loop need not sleep; with
 * milliseconds between messages the window shrinks to nothing; 0 stops it. The figures come from the addon's
 * own statistics, and the echo's bytes are checked so that looking never loses or reorders what arrives.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { idlePoll, idlePollStats } from '../src/native';
import { normalizeConfig } from '../src/config/schema';
import { startChildTargetWithConfig } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { cdb10 } from './scsi-helpers';

/**
 * A child process that echoes each 64-byte message it reads on 127.0.0.1:port, after as many milliseconds as the
 * message's byte 4 says, and prints its port.
 */
async function echoChild(): Promise<{ proc: ChildProcess; port: number }> {
  const code = `
    const net = require('net');
    const s = net.createServer({ noDelay: true }, (c) => {
      let buf = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 64) {
          const m = buf.subarray(0, 64);
          buf = buf.subarray(64);
          if (m[4] === 0) c.write(m);
          else setTimeout(() => c.write(m), m[4]);
        }
      });
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    proc.once('exit', (c) => reject(new Error(`echo child exited ${c}`)));
  });
  return { proc, port };
}

/** `n` messages of 64 bytes, each sent once the previous one came back (queue depth 1), echoed `delayMs` late. */
async function pingPong(sock: net.Socket, n: number, delayMs: number): Promise<boolean> {
  let ok = true;
  let pending = Buffer.alloc(0);
  for (let i = 0; i < n; i++) {
    const msg = Buffer.alloc(64, i & 0xff);
    msg.writeUInt32BE(i, 0);
    msg[4] = delayMs;
    const back = new Promise<Buffer>((resolve) => {
      const onData = (d: Buffer) => {
        pending = Buffer.concat([pending, d]);
        if (pending.length < 64) return;
        sock.off('data', onData);
        const got = pending.subarray(0, 64);
        pending = pending.subarray(64);
        resolve(got);
      };
      sock.on('data', onData);
    });
    sock.write(msg);
    ok &&= (await back).equals(msg);
  }
  return ok;
}

/** What a thread that does not look reports. */
const STOPPED = { caught: 0, missed: 0, idle: 0, lookMs: 0, windowUs: 0, maxUs: 0, shared: 0 };

test.serial('looks catch a prompt echo, shrink to nothing over long gaps, and stop at 0', async (t) => {
  const { proc, port } = await echoChild();
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => sock.once('connect', r));
  try {
    t.deepEqual(idlePollStats(), STOPPED);
    t.throws(() => idlePoll(-1), { message: /microseconds/ });
    idlePoll(500);
    t.true(await pingPong(sock, 2000, 0), 'every echo intact, in order');
    const prompt = idlePollStats();
    t.log('prompt echoes', JSON.stringify(prompt));
    t.is(prompt.maxUs, 500);
    // No look lasts longer than the maximum (a little more: the last poll and yield).
    t.true(prompt.lookMs <= (prompt.caught + prompt.missed) * 0.6, `${prompt.lookMs} ms of looks`);
    // Most round trips end within 500 µs of loopback: the window grows and looks catch them. Unless the test's
    // CPU was found shared (a loaded machine: other test files), which pauses the looks.
    if (prompt.shared === 0) t.true(prompt.caught > 200, `looks that caught the echo: ${prompt.caught}`);
    else t.log('this CPU was found shared: looking paused');

    // Echoes 5 ms late: every idle period is longer than the maximum, so the window shrinks to 0.
    t.true(await pingPong(sock, 40, 5));
    const slow = idlePollStats();
    t.log('echoes 5 ms late', JSON.stringify(slow));
    t.is(slow.windowUs, 0, 'no window left');

    // Stopped: the loop sleeps without looking, the statistics stay as they were.
    idlePoll(0);
    t.true(await pingPong(sock, 200, 0));
    t.deepEqual(idlePollStats(), STOPPED);
  } finally {
    idlePoll(0);
    sock.destroy();
    proc.kill();
  }
});

test.serial('no look while a command waits on a device, nor in the gap after it', async (t) => {
  const { proc, port } = await echoChild();
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => sock.once('connect', r));
  // The counter row the worker gives the addon: slot 0 counts commands (left alone: never "batched"), slot 1 the
  // bytes queued to backstores.
  const row = new Float64Array(2);
  try {
    idlePoll(500, { array: row, commands: 0, queued: 1 });
    t.true(await pingPong(sock, 1000, 0));
    const control = idlePollStats();
    t.log('no device', JSON.stringify(control));
    if (control.shared === 0) t.true(control.caught > 200, `looks that caught the echo: ${control.caught}`);
    else t.log('this CPU was found shared: looking paused');
    // Every other message stands for a command on a device: bytes are queued while its echo is awaited. The
    // idle period after it (the next message's) follows a device wait: no look there either.
    const before = control.caught + control.missed;
    let ok = true;
    for (let i = 0; i < 1000; i++) {
      row[1] = i % 2 === 0 ? 4096 : 0;
      ok &&= await pingPong(sock, 1, 0);
      row[1] = 0;
    }
    t.true(ok);
    const device = idlePollStats();
    t.log('device waits', JSON.stringify(device));
    t.true(device.caught + device.missed - before <= 20, `looks: ${device.caught + device.missed - before}`);
  } finally {
    idlePoll(0);
    sock.destroy();
    proc.kill();
  }
});

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

test.serial(
  'the idlePoll setting: 200 µs by default, 0..1000, and each worker reports its looks',
  async (t) => {
    const cfg = (more: object) =>
      normalizeConfig({
        targets: [
          { name: 'iqn.2026-12.io.nodetgt.test:x', luns: [{ lun: 0, backstore: 'null', size: '1M' }] },
        ],
        ...more,
      });
    t.is(cfg({}).idlePoll, 200);
    t.is(cfg({ idlePoll: 0 }).idlePoll, 0);
    t.throws(() => cfg({ idlePoll: 1001 }), { message: /idlePoll/ });
    const looks = async (idle: number | undefined) => {
      const g = await startChildTargetWithConfig({
        workers: 1,
        ...(idle === undefined ? {} : { idlePoll: idle }),
        targets: [
          { name: 'iqn.2026-12.io.nodetgt.test:idle', luns: [{ lun: 0, backstore: 'null', size: '1M' }] },
        ],
      });
      try {
        const ini = await TestInitiator.connect(g.port);
        const r = await ini.login({
          targetName: 'iqn.2026-12.io.nodetgt.test:idle',
          initiatorName: 'iqn.2026-12.io.nodetgt.test:ini',
        });
        t.is(r.status, 0);
        for (let i = 0; i < 1000; i++) {
          const rd = await ini.scsi(cdb10(0x28, i % 2048, 1), { edtl: 512, read: true });
          if (rd.status !== 0) throw new Error(`READ: status ${rd.status}`);
        }
        ini.close();
        // The worker writes its figures once a second.
        await new Promise((res) => setTimeout(res, 1300));
        const text = await scrape(g.metricsPort);
        return ['caught', 'missed', 'shared'].map((k) => {
          // One series per thread (label thread): summed.
          const re = new RegExp(`^nodetgt_worker_idle_poll_${k}_total\\{[^}]*\\} (\\S+)$`, 'gm');
          const values = [...text.matchAll(re)].map((x) => Number(x[1]));
          if (values.length === 0) throw new Error(`no nodetgt_worker_idle_poll_${k}_total in:\n${text}`);
          return values.reduce((a, b) => a + b, 0);
        });
      } finally {
        await g.stop();
      }
    };
    const on = await looks(undefined);
    t.log('default: caught, missed, shared', on.join(', '));
    t.true(on[0] + on[1] + on[2] > 0, 'the worker looked before sleeping');
    t.deepEqual(await looks(0), [0, 0, 0], 'idlePoll 0: no looks');
  },
);
