/**
 * Backpressure from the backstores: the bytes a worker's commands have handed to the SCSI layer and that are
 * not done yet (writes not yet on the medium, reads not yet sent). Past the high-water mark the worker reads no
 * more from a socket that delivers data: each such connection stops reading (TCP then pushes back on the
 * initiator) until the queue is down to the low-water mark. The receive slabs and the READ buffers are then
 * bounded by the marks plus what the CmdSN windows let commands hold before they run.
 *
 * Only running commands count, and they always end (their I/O completes), so the queue always drains: a
 * connection is never left stopped with nothing that could restart it. Commands still waiting for Data-Out do
 * not count (counting them could stop the very reads they wait for).
 */

/** A connection as seen here: it can stop and restart reading for this reason. */
export interface ReadGate {
  stopReading(reason: number): void;
  startReading(reason: number): void;
}

/** Reasons a connection is not reading, as bits (Connection.readStops). */
export const STOP_SEND_QUEUE = 1;
export const STOP_BACKSTORE = 2;

export class BackstoreQueue {
  /** Bytes of running commands: write data given to the backstore, read data being read or sent. */
  bytes = 0;
  /** True from above highWater until down to lowWater. */
  over = false;
  /** Times the queue went over its high-water mark. */
  overs = 0;
  private readonly held = new Set<ReadGate>();

  constructor(
    public highWater: number,
    public lowWater: number = Math.floor(highWater / 2),
  ) {}

  /** A command started with `n` bytes to move. */
  add(n: number): void {
    this.bytes += n;
    if (!this.over && this.bytes > this.highWater) {
      this.over = true;
      this.overs++;
    }
  }

  /** A command that counted `n` bytes is done with them. */
  done(n: number): void {
    this.bytes -= n;
    if (this.over && this.bytes <= this.lowWater) {
      this.over = false;
      const held = [...this.held];
      this.held.clear();
      for (const c of held) c.startReading(STOP_BACKSTORE);
    }
  }

  /** Connections stopped for this queue right now. */
  get holding(): number {
    return this.held.size;
  }

  /** Stop `c` reading until the queue is down to the low-water mark; true when it was reading until now. */
  hold(c: ReadGate): boolean {
    if (!this.over || this.held.has(c)) return false;
    this.held.add(c);
    c.stopReading(STOP_BACKSTORE);
    return true;
  }

  /** `c` is gone. */
  forget(c: ReadGate): void {
    this.held.delete(c);
  }
}
