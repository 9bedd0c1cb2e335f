/** The HTTP endpoint: /metrics in the Prometheus text format, or OpenMetrics when the Accept header asks for it. */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { log } from '../util/log';
import { Exposition, type MetricsSource } from './exposition';

export { GAUGES } from './names';

export interface MetricsServer {
  server: http.Server;
  port: number;
  exposition: Exposition;
}

export function startMetricsServer(
  source: MetricsSource,
  host: string,
  port: number,
): Promise<MetricsServer> {
  const exposition = new Exposition(source);
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics' && !req.url?.startsWith('/metrics?')) {
      res.writeHead(404).end('not found\n');
      return;
    }
    exposition.renderParts(req.headers.accept).then(
      ({ contentType, parts, length }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': length });
        // Corked: the head and every part go to the socket in one writev, without being copied together first.
        res.cork();
        for (const p of parts) res.write(p);
        res.end();
        res.uncork();
      },
      (e: Error) => {
        log.error('metrics exposition failed', { error: e.stack ?? e.message });
        res.writeHead(500).end('exposition failed\n');
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `metrics ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`,
        ),
      ),
    );
    server.listen(port, host, () =>
      resolve({ server, port: (server.address() as AddressInfo).port, exposition }),
    );
  });
}
