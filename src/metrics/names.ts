/** Names, help texts and types of the instance counters (src/metrics/counters.ts) and the LU fault counters. */
import { COUNTERS, type CounterName, type LuFault } from './counters';

export const HELP: Record<CounterName, [string, 'counter' | 'gauge']> = {
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
  cxnRefused: ['Connections refused at accept (admission limits, descriptors low)', 'counter'],
  fdExhausted: ['Times the process ran out of file descriptors (EMFILE/ENFILE)', 'counter'],
  partialPduTimeouts: ['Connections dropped for holding a partial PDU past the timeout', 'counter'],
  workerDeaths: ['Worker threads that died and were replaced', 'counter'],
  controlRequests: ['Requests served on the control socket (nodetgt show, session close)', 'counter'],
  controlRefused: ['Control socket connections refused: not the user running the target', 'counter'],
  tgtLoginRateLimited: [
    'Logins refused unheard because their address failed authentication too often (see limits.authFailuresPerAddress)',
    'counter',
  ],
  authBlockedAddresses: ['Addresses whose logins are refused for now after authentication failures', 'gauge'],
  tgtLoginLimitRefusals: [
    'Logins refused Out of Resources at a session or connection limit (limits.maxSessions, a target maxSessions or maxConnections)',
    'counter',
  ],
  tmfRequests: ['Task management function requests performed', 'counter'],
  tmfNotComplete: ['Task management functions answered other than Function complete', 'counter'],
  tmfDataOutWaitExpired: [
    'Multi-task TMFs answered at the bound, before the initiator had sent the Data-Out for every R2T of the affected tasks',
    'counter',
  ],
  tgtLoginNoSession: [
    'Logins refused Session does not exist (0x020a): a TSIH naming no session of this initiator',
    'counter',
  ],
  tgtLoginTooManyConnections: [
    "Logins refused Too many connections (0x0206): past the session's negotiated MaxConnections",
    'counter',
  ],
  cxnReinstatements: [
    'Connections logged out implicitly by a login with their CID (reinstatement)',
    'counter',
  ],
  cxnLogoutCidNotFound: ['Logout requests naming a CID not in the session (response 1)', 'counter'],
  ssnConnectionFailures: [
    'Sessions of several connections ended because one failed (ErrorRecoveryLevel 0 and 1)',
    'counter',
  ],
  snackRequests: ['SNACK Requests received (ErrorRecoveryLevel 1)', 'counter'],
  recoveryR2ts: [
    'Recovery R2Ts sent for Data-Out lost to a data digest error (ErrorRecoveryLevel 1)',
    'counter',
  ],
  cxnRecoveries: [
    'Connections lost at ErrorRecoveryLevel 2 whose tasks were kept for reassignment (failed, or removed for recovery)',
    'counter',
  ],
  taskReassignments: [
    'Tasks reassigned to another connection by TASK REASSIGN (ErrorRecoveryLevel 2)',
    'counter',
  ],
  taskReassignRefusals: [
    'TASK REASSIGN requests refused because the session is below ErrorRecoveryLevel 2',
    'counter',
  ],
  taskReassignExpired: [
    'Tasks aborted because Time2Wait + Time2Retain passed with no reassignment (ErrorRecoveryLevel 2)',
    'counter',
  ],
  readSlabBytes: ['Receive slab bytes the workers hold (in use and pooled)', 'gauge'],
  readSlabPooledBytes: ['Free receive slab bytes kept for reuse (at most readPoolBytes per worker)', 'gauge'],
  backstoreQueuedBytes: ['Bytes of running commands queued to the backstores (write and read data)', 'gauge'],
  readStopsBackstore: [
    'Times a connection stopped reading because its worker was past backstoreHighWater',
    'counter',
  ],
};

export const LU_HELP: Record<LuFault, [string, string, 'counter' | 'gauge']> = {
  readErrors: ['nodetgt_lu_read_errors_total', 'Backstore read errors per LU', 'counter'],
  writeErrors: [
    'nodetgt_lu_write_errors_total',
    'Backstore write errors per LU (ENOSPC and EDQUOT excluded)',
    'counter',
  ],
  flushErrors: ['nodetgt_lu_flush_errors_total', 'Backstore flush (fdatasync) errors per LU', 'counter'],
  unmapErrors: ['nodetgt_lu_unmap_errors_total', 'Backstore unmap (punch hole) errors per LU', 'counter'],
  noSpace: [
    'nodetgt_lu_no_space_errors_total',
    'Writes refused for lack of space (ENOSPC, EDQUOT) per LU',
    'counter',
  ],
  shrunk: ['nodetgt_lu_backing_shrunk', '1 once the backing file was found smaller than the LU', 'gauge'],
  badRequests: [
    'nodetgt_lu_bad_requests_total',
    'Commands refused for a malformed request (PR OUT, XCOPY, COMPARE AND WRITE parameters) per LU',
    'counter',
  ],
};

/** Counters that are levels, not totals (they die with the thread that kept them). */
export const GAUGES: ReadonlySet<CounterName> = new Set(COUNTERS.filter((n) => HELP[n][1] === 'gauge'));

export function snake(name: string): string {
  return name.replace('PDUs', 'Pdus').replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}
