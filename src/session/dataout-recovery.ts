/**
 * Data-Out lost to a data digest error at ErrorRecoveryLevel 1 (RFC 7143 sec. 7.8): the PDU is discarded and
 * the target asks for the data again with a recovery R2T (one that carries the next unused R2TSN and requests
 * part of a burst an earlier R2T, or the unsolicited burst, already covered: RFC 7143 sec. 2.2).
 *
 * The rest of a broken sequence is discarded too, from the lost PDU to the sequence's end, so that what is kept
 * stays a set of whole runs and the recovery R2T asks for one contiguous range. Pieces then arrive out of offset
 * order (the recovery data after later sequences), so their offsets are recorded and sorted before execution.
 */

export interface DataOutRecovery {
  /** The buffer offset of each piece of Task.data, in the same order. */
  offsets: number[];
  /** The sequence being discarded: its TTT (0xffffffff for unsolicited data), first lost and next offsets. */
  discard: { ttt: number; from: number; next: number } | null;
  /** Ranges lost and not yet asked for again (sent as recovery R2Ts once the command is delivered). */
  lost: Array<{ offset: number; length: number }>;
}

/** Start recovery for a task whose pieces so far are contiguous from offset 0. */
export function beginRecovery(data: readonly Buffer[]): DataOutRecovery {
  const offsets: number[] = [];
  let at = 0;
  for (const b of data) {
    offsets.push(at);
    at += b.length;
  }
  return { offsets, discard: null, lost: [] };
}

/** Whether data is still missing: a sequence being discarded or a range not asked for again. */
export function recoveryPending(r: DataOutRecovery | null): boolean {
  return r !== null && (r.discard !== null || r.lost.length > 0);
}

/**
 * A Data-Out of the sequence being discarded (or the lost one that started it): it must follow on at `next`.
 * Returns false when it does not (a protocol error). When `final`, the whole range is queued for a recovery R2T.
 */
export function discardDataOut(r: DataOutRecovery, offset: number, length: number, final: boolean): boolean {
  const d = r.discard!;
  if (offset !== d.next) return false;
  d.next = offset + length;
  if (final) {
    r.lost.push({ offset: d.from, length: d.next - d.from });
    r.discard = null;
  }
  return true;
}

/** The task's pieces in offset order, for execution. */
export function orderedPieces(r: DataOutRecovery, data: readonly Buffer[]): Buffer[] {
  const idx = data.map((_, i) => i).sort((a, b) => r.offsets[a]! - r.offsets[b]!);
  return idx.map((i) => data[i]!);
}
