/**
 * A worker's side of the control socket: what it knows of its own sessions (they live on it alone) and
 * closing one of them. The portal asks every worker and merges the answers (src/portal/control.ts).
 */
import type { WorkerContext } from './context';
import { log } from '../util/log';
import type { AdminResult, AdminTask, ConnectionTcp, SessionInfo } from '../admin/protocol';
import type { Connection } from '../session/connection';
import { tcpInfo, TCPI_OPT_TIMESTAMPS } from '../native';

export function adminRequest(ctx: WorkerContext, task: AdminTask): AdminResult {
  if (task.op === 'sessions') return { worker: ctx.threadId, sessions: sessionRows(ctx) };
  if (task.op === 'luns') return { worker: ctx.threadId, luns: lunRows(ctx) };
  const s = ctx.sessions.get(task.tsih);
  if (!s || s.ended) return { worker: ctx.threadId, closed: 0 };
  log.info('session closed by the operator', { tsih: s.tsih, initiator: s.initiatorName });
  ctx.endSession(s);
  return { worker: ctx.threadId, closed: 1 };
}

function sessionRows(ctx: WorkerContext): SessionInfo[] {
  const now = Date.now();
  const rows: SessionInfo[] = [];
  for (const s of ctx.sessions.all()) {
    for (const c of s.connections.values()) {
      rows.push({
        target: s.target?.name ?? '',
        tsih: s.tsih,
        isid: s.isid,
        initiator: s.initiatorName,
        type: s.type,
        cid: c.cid,
        peer: c.peer,
        state: c.phase,
        headerDigest: c.headerDigest ? 'CRC32C' : 'None',
        dataDigest: c.dataDigest ? 'CRC32C' : 'None',
        maxRecvDataSegmentLength: {
          initiator: s.params.initiatorMaxRecvDataSegmentLength,
          target: s.params.targetMaxRecvDataSegmentLength,
        },
        maxBurstLength: s.params.maxBurstLength,
        worker: ctx.threadId,
        ageSeconds: Math.round((now - s.createdAt) / 1000),
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
        local: `${c.meta.localAddress}:${c.meta.localPort}`,
        ...connectionTcp(c),
      });
    }
  }
  return rows;
}

/** TCP_INFO of the connection's own descriptor (the one the worker adopted), while the socket is open. */
function connectionTcp(c: Connection): { tcp: ConnectionTcp } | { tcpError: string } {
  const fd = c.meta.fd;
  // A closed socket's descriptor number may already name another file.
  if (fd === undefined || c.phase === 'closed' || c.socket.destroyed) return { tcpError: 'socket not open' };
  try {
    const i = tcpInfo(fd);
    const timestamps = (i.options & TCPI_OPT_TIMESTAMPS) !== 0;
    const { pmtu, sndMss, rcvMss, advMss, rttUs, totalRetrans } = i;
    return { tcp: { pmtu, sndMss, rcvMss, advMss, rttUs, totalRetrans, timestamps } };
  } catch (e) {
    return { tcpError: (e as Error).message };
  }
}

function lunRows(ctx: WorkerContext): NonNullable<AdminResult['luns']> {
  const rows: NonNullable<AdminResult['luns']> = [];
  for (const t of ctx.targets.all()) {
    const d = t.scsi;
    if (!d) continue;
    for (const n of d.lunNumbers()) {
      const lu = d.getLun(n)!;
      rows.push({
        target: t.name,
        lun: n,
        type: lu.type,
        sizeBytes: lu.numBlocks * lu.blockSize,
        blockSize: lu.blockSize,
        readOnly: lu.writeProtected,
        thin: lu.thinProvisioned,
        removable: lu.removable,
        serial: lu.identity.serial,
        naa: lu.identity.naa.toString('hex'),
      });
    }
  }
  return rows;
}
