/**
 * The contract between the SCSI layer (src/scsi) and whatever stores the blocks.
 * Offsets and lengths are in bytes; callers keep them block-aligned and within sizeBytes.
 */
export interface Backstore {
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  /** Capacity in bytes (a multiple of blockSize). */
  readonly sizeBytes: number;
  /** True when writes are refused at the SCSI layer (DATA PROTECT / WRITE PROTECTED). */
  readonly readOnly: boolean;
  /**
   * True when a completed write may still sit in a volatile cache (page cache, disk cache) until flush():
   * this is what the caching mode page reports as WCE.
   */
  readonly writeCacheEnabled: boolean;
  /** True when unmap() really deallocates (thin provisioning). */
  readonly thinProvisioned: boolean;
  /** Fill `into` (exactly `into.length` bytes) from `offset`. Must not copy through an intermediate buffer. */
  read(offset: number, into: Buffer): Promise<void>;
  /** Write the buffers back to back starting at `offset` (vectored, no concatenation). fua: durable on return. */
  write(offset: number, data: readonly Buffer[], fua: boolean): Promise<void>;
  /** Make every completed write durable (fdatasync). */
  flush(): Promise<void>;
  /** Deallocate a range (punch hole); later reads return zeros. */
  unmap(offset: number, length: number): Promise<void>;
  close(): Promise<void>;
}
