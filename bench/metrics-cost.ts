/**
 * What metrics cost. A/B: 4K random reads at QD32 from the TypeScript initiator against a null LU, in
 * alternating rounds without and with a scrape of /metrics every second; then the time one scrape takes with N
 * sessions open. Everything runs in this process (target workers are threads), so compare the rounds with each
 * other, not with other benchmarks.
 *
 *   node dist/bench/metrics-cost.js [--rounds 3] [--seconds 5] [--sessions 200]
 */
import * as http from 'node:http';
import { startTestTarget, TEST_TARGET } from '../test/helpers/target';
import { TestInitiator } from '../test/helpers/initiator';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

function scrape(port: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        res.resume();
        res.on('end', () => resolve(performance.now() - t0));
      })
      .on('error', reject);
  });
}

async function iops(ini: TestInitiator, seconds: number, qd: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  const loop = async (k: number) => {
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x28;
    cdb.writeUInt16BE(8, 7);
    for (let lba = k * 7919; performance.now() < end; lba = (lba + 162013) % 200000) {
      cdb.writeUInt32BE(lba * 8, 2);
      await ini.scsi(cdb, { edtl: 4096, read: true });
      done++;
    }
  };
  await Promise.all(Array.from({ length: qd }, (_, k) => loop(k)));
  return done / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const rounds = arg('rounds', 3);
  const seconds = arg('seconds', 5);
  const sessions = arg('sessions', 200);
  const tt = await startTestTarget({
    workers: 1,
    luns: [{ lun: 0, path: 'null', size: '1G' }],
    extra: { metrics: '127.0.0.1:0', queueDepth: 64 },
  });
  const port = tt.target.metricsPort;
  try {
    const ini = await TestInitiator.connect(tt.port);
    await ini.login({ targetName: TEST_TARGET });
    await iops(ini, 1, 32); // warm-up
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < rounds; r++) {
      a.push(await iops(ini, seconds, 32));
      const timer = setInterval(() => void scrape(port), 1000);
      b.push(await iops(ini, seconds, 32));
      clearInterval(timer);
      console.log(`round ${r + 1}: no scrape ${a[r].toFixed(0)} IOPS, scrape 1/s ${b[r].toFixed(0)} IOPS`);
    }
    const d = ((median(b) - median(a)) / median(a)) * 100;
    console.log(
      `median: A ${median(a).toFixed(0)} IOPS, B ${median(b).toFixed(0)} IOPS, B-A ${d.toFixed(2)}%`,
    );
    ini.close();

    const open: TestInitiator[] = [];
    for (const n of [0, Math.floor(sessions / 2), sessions]) {
      while (open.length < n) {
        const s = await TestInitiator.connect(tt.port);
        await s.login({ targetName: TEST_TARGET });
        open.push(s);
      }
      const times: number[] = [];
      for (let i = 0; i < 10; i++) times.push(await scrape(port));
      console.log(
        `${n} sessions: scrape median ${median(times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`,
      );
    }
    for (const s of open) s.close();
  } finally {
    await tt.close();
  }
}

void main();
