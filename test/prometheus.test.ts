/**
 * A real Prometheus (Debian's `prometheus`, see scripts/install-deps.sh --test) scrapes nodetgt every second
 * while I/O runs; its query API must then give a per-LU rate and a read latency quantile. The dashboard and the
 * alert rules in monitoring/ may only use metric names a live /metrics has, and promtool must accept both the
 * rules and the exposition.
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';

const ROOT = path.join(__dirname, '..', '..');
const MONITORING = path.join(ROOT, 'monitoring');
/** Set by `nodetgt tune` work on another branch; the dashboard and the MTU alert use it ahead of time. */
const EXTERNAL_NAMES = new Set(['nodetgt_tuning_check']);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function getJson(port: number, p: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(e as Error);
          }
        });
      })
      .on('error', reject);
  });
}

interface QueryResult {
  status: string;
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

async function query(port: number, expr: string): Promise<QueryResult['data']['result']> {
  const r = (await getJson(port, `/api/v1/query?query=${encodeURIComponent(expr)}`)) as QueryResult;
  return r.status === 'success' ? r.data.result : [];
}

/** Metric names in a live exposition (histograms also by their _bucket, _sum and _count series). */
function exposedNames(body: string): Set<string> {
  const names = new Set<string>();
  for (const m of body.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)) names.add(m[1]);
  return names;
}

test('Prometheus scrapes nodetgt under I/O: per-LU rate and p99 read latency through its API', async (t) => {
  const tt = await startTestTarget({ workers: 1, extra: { metrics: '127.0.0.1:0' } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-prom-'));
  const promPort = await freePort();
  fs.writeFileSync(
    path.join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ['${path.join(MONITORING, 'alerts.yml')}']`,
      'scrape_configs:',
      '  - job_name: nodetgt',
      `    static_configs: [{ targets: ['127.0.0.1:${tt.target.metricsPort}'] }]`,
    ].join('\n'),
  );
  const prom = spawn(
    'prometheus',
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let promLog = '';
  prom.stderr.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4000)));
  let running = true;
  const ini = await TestInitiator.connect(tt.port);
  try {
    t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x28;
    cdb.writeUInt16BE(8, 7);
    const io = (async () => {
      let lba = 0;
      while (running) {
        cdb.writeUInt32BE(lba++ % 4096, 2);
        await ini.scsi(cdb, { edtl: 4096, read: true });
      }
    })();
    const rateExpr = `sum by (target, lun) (rate(nodetgt_lu_commands_total{op="read"}[5s]))`;
    const p99Expr =
      'histogram_quantile(0.99, sum by (le) (rate(nodetgt_lu_latency_seconds_bucket{op="read"}[5s])))';
    let rate: QueryResult['data']['result'] = [];
    let p99: QueryResult['data']['result'] = [];
    for (let i = 0; i < 40 && (rate.length === 0 || p99.length === 0 || Number(rate[0].value[1]) <= 0); i++) {
      await new Promise((r) => setTimeout(r, 500));
      rate = await query(promPort, rateExpr).catch(() => []);
      p99 = await query(promPort, p99Expr).catch(() => []);
    }
    running = false;
    await io;
    t.is(rate.length, 1, `per-LU rate: ${JSON.stringify(rate)} ${promLog}`);
    t.is(rate[0]?.metric.lun, '0');
    t.true(Number(rate[0]?.value[1]) > 10, `reads/s ${rate[0]?.value[1]}`);
    t.is(p99.length, 1, `p99: ${JSON.stringify(p99)}`);
    const seconds = Number(p99[0]?.value[1]);
    t.true(seconds > 0 && seconds < 2, `p99 read latency ${seconds} s`);
    // The alert rules loaded and evaluate (none should fire on a healthy target).
    const rules = (await getJson(promPort, '/api/v1/rules')) as {
      data: { groups: Array<{ rules: unknown[] }> };
    };
    t.is(rules.data.groups[0]?.rules.length, 8);
  } finally {
    running = false;
    ini.close();
    prom.kill('SIGTERM');
    await new Promise((r) => prom.once('exit', r));
    await tt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the dashboard and alert rules use only metrics a live /metrics has; promtool accepts rules and exposition', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    const ini = await TestInitiator.connect(tt.port);
    t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
    const body = (await tt.target.metrics()).body;
    ini.close();
    const exposed = exposedNames(body);
    const used = new Set<string>();
    for (const f of ['grafana-dashboard.json', 'alerts.yml'])
      for (const m of fs.readFileSync(path.join(MONITORING, f), 'utf8').matchAll(/\bnodetgt_[a-z0-9_]+/g))
        used.add(m[0]);
    t.true(used.size > 20, `${used.size} names used`);
    const missing = [...used].filter((n) => !exposed.has(n) && !EXTERNAL_NAMES.has(n));
    t.deepEqual(missing, []);
    execFileSync('promtool', ['check', 'rules', path.join(MONITORING, 'alerts.yml')], { stdio: 'pipe' });
    // promtool lints the Prometheus text format from stdin; a problem makes it exit non-zero.
    const lint = execFileSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    t.is(lint.trim(), '');
    t.notThrows(() => JSON.parse(fs.readFileSync(path.join(MONITORING, 'grafana-dashboard.json'), 'utf8')));
  } finally {
    await tt.close();
  }
});
