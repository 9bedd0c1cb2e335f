/**
 * A scrape client in its own process, as Prometheus is: it fetches /metrics when told to and throws the body
 * away as it arrives (bytes counted, not kept or decoded). The benchmark's TypeScript initiator runs in the
 * parent's event loop; a scrape made there would stall that loop for as long as it takes to receive and decode
 * a megabyte of text, and the A/B of bench/metrics-cost.ts would charge the initiator's lost turns to the target.
 * The child's own CPU time is read from /proc so that the report can show it apart from the target's.
 *
 * Run as a module by the parent (`Scraper.start()`), and as the child by fork() of this very file.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { cpuMicros } from './sys';

export interface ScrapeResult {
  ms: number;
  bytes: number;
  status: number;
}

interface Request {
  id: number;
  port: number;
}
type Reply = { id: number } & ({ ok: ScrapeResult } | { error: string });

export class Scraper {
  private next = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (r: ScrapeResult) => void; reject: (e: Error) => void }
  >();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: Reply) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if ('ok' in m) w.resolve(m.ok);
      else w.reject(new Error(m.error));
    });
    child.on('exit', (code, signal) => {
      for (const w of this.waiting.values()) w.reject(new Error(`scraper exited (${code ?? signal})`));
      this.waiting.clear();
    });
  }

  static async start(): Promise<Scraper> {
    const child = fork(__filename, ['--scraper-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`scraper exited at start (${code})`)));
    });
    return new Scraper(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The child's CPU time so far, µs. */
  cpuMicros(): number {
    return cpuMicros(this.pid) ?? NaN;
  }

  scrape(port: number): Promise<ScrapeResult> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ id, port } satisfies Request);
    });
  }

  stop(): void {
    this.child.kill();
  }
}

function childMain(): void {
  // One kept-alive connection, as Prometheus keeps one per target.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  process.on('message', (m: Request) => {
    const t0 = performance.now();
    const reply = (r: Reply) => process.send!(r);
    http
      .get({ host: '127.0.0.1', port: m.port, path: '/metrics', agent }, (res) => {
        let bytes = 0;
        res.on('data', (d: Buffer) => (bytes += d.length));
        res.on('end', () =>
          reply({ id: m.id, ok: { ms: performance.now() - t0, bytes, status: res.statusCode ?? 0 } }),
        );
        res.on('error', (e) => reply({ id: m.id, error: e.message }));
      })
      .on('error', (e) => reply({ id: m.id, error: e.message }));
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true });
}

if (require.main === module && process.argv.includes('--scraper-child')) childMain();
