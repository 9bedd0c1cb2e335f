/**
 * The full feature phase dispatch table (RFC 7143 sec. 11): which handler each initiator opcode goes to, and
 * what the connection does with a PDU that has none. Every handler returns a Disposition for Connection.dispose.
 */
import type { Pdu } from '../pdu/pdu';
import { Opcode, RejectReason } from '../pdu/opcodes';
import type { Connection } from './connection';
import { type Disposition, drop, refuse, reject } from './disposition';
import { onTaskManagement } from './tmf';
import { handleLogout } from './logout';
import { onSnack } from './snack';

/** A PDU received in full feature phase. */
export function dispatchFfp(conn: Connection, pdu: Pdu): Disposition {
  // ExpStatSN acknowledges our responses: what ERL 1 kept for them goes.
  if (pdu.opcode !== Opcode.DataOut || pdu.final) {
    conn.expStatSN = pdu.bhs.readUInt32BE(28);
    conn.recovery?.acknowledge(conn.expStatSN);
  }
  switch (pdu.opcode) {
    case Opcode.ScsiCommand:
      if (conn.session!.type !== 'Normal')
        return refuse(RejectReason.ProtocolError, 'SCSI command in a discovery session');
      return conn.commands.onCommand(pdu);
    case Opcode.DataOut:
      return conn.commands.onDataOut(pdu);
    case Opcode.NopOut:
      return conn.keepalive.onNopOut(pdu);
    case Opcode.TextRequest:
      return conn.text.onText(pdu);
    case Opcode.TaskMgmtRequest:
      return onTaskManagement(conn, pdu);
    case Opcode.LogoutRequest:
      return handleLogout(conn, pdu);
    case Opcode.Snack:
      if (conn.recovery) return onSnack(conn, pdu);
      return refuse(RejectReason.CommandNotSupported, 'SNACK at ErrorRecoveryLevel 0');
    case Opcode.LoginRequest:
      return refuse(RejectReason.ProtocolError, 'Login Request in full feature phase');
    default:
      return reject(RejectReason.CommandNotSupported, 'unknown opcode');
  }
}

/**
 * RFC 7143 11.14: nothing may follow a Logout Request on the connection it closes. What does is dropped
 * unanswered, never dispatched (its task would be terminated by the logout anyway), and counted.
 */
export function afterLogout(pdu: Pdu): Disposition {
  return drop('PDU after the Logout Request dropped', { itt: pdu.itt });
}
