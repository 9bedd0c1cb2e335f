/**
 * The pending-login slots the portal thread shares with the workers (src/portal/admission.ts decides who gets
 * one): here, below both, because the worker frees a slot when its connection's login ends. A slot holds a
 * generation number, so that a late free never releases a slot given since to another connection.
 */
import type { LimitsConfig } from '../config/schema';

export interface AdmissionShared {
  pending: SharedArrayBuffer;
}

export function createAdmissionShared(limits: LimitsConfig): AdmissionShared {
  return { pending: new SharedArrayBuffer(limits.maxPendingLogins * 4) };
}

/** What a connection carries from admission to its end. */
export interface Ticket {
  slot: number;
  gen: number;
}

/** Worker side: the connection with this ticket has finished its login (or closed during it). */
export function endPendingLogin(shared: AdmissionShared, t: Ticket): void {
  Atomics.compareExchange(new Int32Array(shared.pending), t.slot, t.gen, 0);
}
