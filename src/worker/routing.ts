/**
 * Session affinity shared by the portal thread and the workers: which worker thread owns each TSIH.
 * One Int32Array slot per TSIH value (0 = free, else the owner's threadId), claimed with compareExchange,
 * so TSIHs are unique across workers without any message round trip.
 */
export interface RoutingShared {
  tsihOwner: SharedArrayBuffer;
}

export function createRoutingShared(): RoutingShared {
  return { tsihOwner: new SharedArrayBuffer(65536 * 4) };
}

export class TsihTable {
  private readonly owners: Int32Array;
  private cursor = 1;
  constructor(shared: RoutingShared) {
    this.owners = new Int32Array(shared.tsihOwner);
  }
  /** Allocate a TSIH (1..65535) for a session owned by `threadId`; 0 if all are in use. */
  allocate(threadId: number): number {
    for (let n = 0; n < 65535; n++) {
      const t = this.cursor;
      this.cursor = this.cursor === 65535 ? 1 : this.cursor + 1;
      if (Atomics.compareExchange(this.owners, t, 0, threadId) === 0) return t;
    }
    return 0;
  }
  release(tsih: number): void {
    Atomics.store(this.owners, tsih, 0);
  }
  /** Free every TSIH owned by a thread that is gone; returns how many. */
  releaseOwner(threadId: number): number {
    let n = 0;
    for (let t = 1; t < 65536; t++)
      if (Atomics.compareExchange(this.owners, t, threadId, 0) === threadId) n++;
    return n;
  }
  /** TSIHs currently owned by `threadId`. */
  ownedBy(threadId: number): number {
    let n = 0;
    for (let t = 1; t < 65536; t++) if (Atomics.load(this.owners, t) === threadId) n++;
    return n;
  }
  owner(tsih: number): number {
    return tsih > 0 && tsih < 65536 ? Atomics.load(this.owners, tsih) : 0;
  }
}
