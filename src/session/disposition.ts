/**
 * What a PDU handler decided about the PDU it was given. Handlers return one and never send a Reject, count
 * an error or close the connection themselves: Connection.dispose does that in one place (LIO and SPDK have
 * their handlers return such a code to one caller too), so every Reject carries the offending header, is counted
 * and logged alike, and a fatal error ends the connection the same way wherever it was found.
 *
 *  ok      nothing more to do (the handler answered, or will once the request's turn comes)
 *  reject  a Reject PDU with this reason (RFC 7143 sec. 11.17); the connection goes on
 *  drop    the PDU is dropped unanswered (e.g. one that follows a Logout Request), logged and counted
 *  fatal   the connection ends (error recovery level 0: a protocol error); with `reject`, a Reject goes first
 */
import type { RejectReasonValue } from '../pdu/opcodes';

interface Report {
  /** Why, for the log line (also its rate-limit key) and the close reason. */
  readonly why: string;
  /** Counted as a format/protocol error (iscsiInstSsnFormatErrors); digest errors are counted by the parser. */
  readonly formatError: boolean;
  /** The log level: 'warn' for the peer's errors worth an operator's eye, 'debug' for expected refusals. */
  readonly level: 'warn' | 'debug';
  /** More fields for the log line. */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export type Disposition =
  | { readonly kind: 'ok' }
  | (Report & {
      readonly kind: 'reject';
      readonly reason: RejectReasonValue;
      /** DataSN/R2TSN field: for a rejected Data/R2T SNACK, the next one (RFC 7143 11.17.3). */
      readonly dataSN?: number;
    })
  | (Report & { readonly kind: 'drop' })
  | (Report & { readonly kind: 'fatal'; readonly reject?: RejectReasonValue });

export const OK: Disposition = { kind: 'ok' };

interface Options {
  formatError?: boolean;
  level?: 'warn' | 'debug';
  detail?: Record<string, unknown>;
}

/** A Reject; by default a counted format error, logged as a warning. */
export function reject(
  reason: RejectReasonValue,
  why: string,
  o: Options & { dataSN?: number } = {},
): Disposition {
  const formatError = o.formatError ?? true;
  return {
    kind: 'reject',
    reason,
    why,
    formatError,
    level: o.level ?? (formatError ? 'warn' : 'debug'),
    detail: o.detail,
    dataSN: o.dataSN,
  };
}

/** A Reject the initiator may expect (an unsupported request, a bad field): not counted, logged at debug. */
export function refuse(
  reason: RejectReasonValue,
  why: string,
  detail?: Record<string, unknown>,
): Disposition {
  return reject(reason, why, { formatError: false, detail });
}

/** The connection ends; by default a counted format error, logged as a warning. */
export function fatal(why: string, o: Options & { reject?: RejectReasonValue } = {}): Disposition {
  const formatError = o.formatError ?? true;
  return {
    kind: 'fatal',
    why,
    formatError,
    level: o.level ?? 'warn',
    detail: o.detail,
    reject: o.reject,
  };
}

/** Dropped unanswered; a counted format error, logged as a warning. */
export function drop(why: string, detail?: Record<string, unknown>): Disposition {
  return { kind: 'drop', why, formatError: true, level: 'warn', detail };
}
