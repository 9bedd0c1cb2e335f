/** Prometheus exposition of the shared counters, summed over the portal thread and every worker at scrape time. */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { COUNTERS, readCounters, type CounterName, type CounterShared } from './counters';

const HELP: Record<CounterName, [string, 'counter' | 'gauge']> = {
  tgtLoginAccepts: ['Logins accepted (iscsiTgtLoginAccepts)', 'counter'],
  tgtLoginOtherFails: ['Logins failed for other reasons (iscsiTgtLoginOtherFails)', 'counter'],
  tgtLoginRedirects: ['Logins redirected (iscsiTgtLoginRedirects)', 'counter'],
  tgtLoginAuthorizeFails: ['Logins failed authorization (iscsiTgtLoginAuthorizeFails)', 'counter'],
  tgtLoginAuthenticateFails: ['Logins failed authentication (iscsiTgtLoginAuthenticateFails)', 'counter'],
  tgtLoginNegotiateFails: ['Logins failed negotiation (iscsiTgtLoginNegotiateFails)', 'counter'],
  tgtLogoutNormals: ['Normal logouts (iscsiTgtLogoutNormals)', 'counter'],
  tgtLogoutOthers: ['Other logouts (iscsiTgtLogoutOthers)', 'counter'],
  instSsnDigestErrors: ['Digest errors (iscsiInstSsnDigestErrors)', 'counter'],
  instSsnCxnTimeoutErrors: ['Connection timeouts (iscsiInstSsnCxnTimeoutErrors)', 'counter'],
  instSsnFormatErrors: ['Format/protocol errors (iscsiInstSsnFormatErrors)', 'counter'],
  ssnCmdPDUs: ['PDUs received (iscsiSsnCmdPDUs)', 'counter'],
  ssnRspPDUs: ['PDUs sent (iscsiSsnRspPDUs)', 'counter'],
  ssnTxDataOctets: ['Data segment octets sent (iscsiSsnTxDataOctets)', 'counter'],
  ssnRxDataOctets: ['Data segment octets received (iscsiSsnRxDataOctets)', 'counter'],
  cxnActive: ['Connections being served', 'gauge'],
  cxnAccepted: ['TCP connections accepted by the portal', 'counter'],
  ssnActive: ['Sessions in full feature phase', 'gauge'],
  rejectsSent: ['Reject PDUs sent', 'counter'],
  pduDataCopiedBytes: ['Data segment bytes the parser had to assemble across reads', 'counter'],
  pduHeaderDigestsVerified: ['PDUs received whose header digest (CRC32C) was checked and matched', 'counter'],
  pduDataDigestsVerified: ['PDUs received whose data digest (CRC32C) was checked and matched', 'counter'],
  scsiCommands: ['SCSI commands executed', 'counter'],
  scsiReadBytes: ['Bytes read by initiators', 'counter'],
  scsiWriteBytes: ['Bytes written by initiators', 'counter'],
  scsiCheckConditions: ['SCSI commands that ended in CHECK CONDITION', 'counter'],
  nopInPings: ['NOP-In pings sent on idle connections', 'counter'],
};

function snake(name: string): string {
  return name.replace('PDUs', 'Pdus').replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

export function renderMetrics(shared: CounterShared): string {
  const { total, rows } = readCounters(shared);
  const lines: string[] = [];
  for (const n of COUNTERS) {
    const metric = `nodetgt_${snake(n)}${HELP[n][1] === 'counter' ? '_total' : ''}`;
    lines.push(`# HELP ${metric} ${HELP[n][0]}`, `# TYPE ${metric} ${HELP[n][1]}`, `${metric} ${total[n]}`);
  }
  lines.push(
    '# HELP nodetgt_worker_connections Connections served per worker thread',
    '# TYPE nodetgt_worker_connections gauge',
  );
  for (const r of rows)
    if (r.row > 0) lines.push(`nodetgt_worker_connections{thread="${r.threadId}"} ${r.values.cxnActive}`);
  return lines.join('\n') + '\n';
}

export function startMetricsServer(
  shared: CounterShared,
  host: string,
  port: number,
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics' || req.url?.startsWith('/metrics?')) {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(renderMetrics(shared));
    } else {
      res.writeHead(404).end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `metrics ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`,
        ),
      ),
    );
    server.listen(port, host, () => resolve({ server, port: (server.address() as AddressInfo).port }));
  });
}
