/** One run of the allocation map: `length` bytes from `offset`, all mapped or all deallocated. */
export interface MappingExtent {
  offset: number;
  length: number;
  /** True: the blocks hold stored data. False: deallocated (they read as zeros, LBPRZ). */
  mapped: boolean;
}

/**
 * A lane's redo journal of WRITE ATOMIC(16) as src/scsi/atomic-write.ts uses it: a file's
 * (src/backstore/atomic-journal.ts), or the cluster's for an RBD LU (src/backstore/rbd-atomic.ts). One record at
 * a time; `file` names it in messages; `broken` stops its use (a record kept for replay, or an unknown state).
 */
export interface RedoJournal {
  readonly file: string;
  broken: string | null;
  /** Step (a): the record, durable on return. */
  append(lba: number, blocks: number, blockSize: number, data: readonly Buffer[]): Promise<bigint>;
  /** Step (c): the record no longer counts, durably. */
  invalidate(): Promise<void>;
}

/**
 * The contract between the SCSI layer (src/scsi) and whatever stores the blocks.
 * Offsets and lengths are in bytes; callers keep them block-aligned and within sizeBytes.
 */
export interface Backstore {
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  /**
   * The unit the medium is really written and deallocated in (the file system's block for a file), when
   * larger than blockSize: writes and unmaps aligned to it avoid read-modify-write and partial holes.
   * Optional: absent means blockSize.
   */
  readonly physicalBlockSize?: number;
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
  /**
   * read() where it can finish on this thread at once (a copy from memory or from the page cache): undefined
   * when `into` is filled already, else the promise read() would have given. Optional; a READ whose data is
   * there is then answered in the event-loop turn its command came in, with no promise.
   */
  readNow?(offset: number, into: Buffer): Promise<void> | undefined;
  /** write() in the same way: undefined when the data is written (durable if fua) already. Optional. */
  writeNow?(offset: number, data: readonly Buffer[], fua: boolean): Promise<void> | undefined;
  /** Make every completed write durable (fdatasync). */
  flush(): Promise<void>;
  /**
   * Copy `length` bytes from `src` at srcOffset to this backstore at `offset` (EXTENDED COPY), with the result
   * of reading all of it before writing any (the ranges may overlap when src is this backstore). Durable only
   * after flush(), like write() without fua. Callers keep both ranges block-aligned and within their stores.
   * Optional: without it a copy goes through memory (read + write, src/backstore/copy.ts).
   */
  copyFrom?(src: Backstore, srcOffset: number, offset: number, length: number): Promise<void>;
  /**
   * Write `block` (one logical block) into every block of [offset, offset + length) (WRITE SAME), in one
   * request to a store that can (librbd's writesame). Optional: without it the SCSI layer writes chunks.
   */
  writeSame?(offset: number, length: number, block: Buffer, fua: boolean): Promise<void>;
  /**
   * COMPARE AND WRITE done by the store itself, atomically against every other client of the medium (other
   * gateways of a shared image, not only this process): null when `verify` matched and `data` was written,
   * else the offset (from `offset`) of the first differing byte, nothing written. Optional: without it the SCSI
   * layer reads, compares and writes under its own range lock (atomic within this process).
   */
  compareAndWrite?(offset: number, verify: Buffer, data: Buffer, fua: boolean): Promise<number | null>;
  /** The longest range compareAndWrite() takes, in bytes (librbd: one 512-byte sector). Absent: no limit. */
  readonly compareAndWriteMax?: number;
  /**
   * The longest write the store itself applies whole or not at all (to every reader, and across a crash of this
   * process), provided it is aligned to that length: WRITE ATOMIC(16) is then offered without the journal, with
   * this as MAXIMUM ATOMIC TRANSFER LENGTH, ATOMIC ALIGNMENT and GRANULARITY (librbd: inside one RADOS object).
   * Optional: absent, atomic writes need the journal (file) or are not offered.
   */
  readonly atomicWriteMax?: number;
  /**
   * A store that applies some longer writes whole by itself (RBD: any write inside one RADOS object): true for
   * such a write, which then needs no journal. Optional: absent, only atomicWriteMax-aligned ones are.
   */
  appliesWhole?(offset: number, length: number): boolean;
  /**
   * The redo journal of a lane (worker) of the gateway with this relative target port, kept by the store itself
   * (RBD: in the cluster, src/backstore/rbd-atomic.ts), for atomic writes appliesWhole() does not cover; undefined
   * where the lane has none. Optional: absent, the store keeps no journal.
   */
  redoJournal?(port: number, lane: number): RedoJournal | undefined;
  /** Deallocate a range (punch hole); later reads return zeros. */
  unmap(offset: number, length: number): Promise<void>;
  /**
   * The allocation map of [offset, offset + length) (GET LBA STATUS): extents in ascending order, back to
   * back, each a whole number of blocks, adjacent extents differing in `mapped`, together covering the range
   * exactly. Rounding is conservative: a block only partly allocated counts as mapped.
   *
   * With `maxExtents`, at most that many extents are returned; they then cover a prefix of the range
   * (the caller asks again from where they end). A snapshot: concurrent writes and unmaps may change it.
   * Optional: a backstore without it has no allocation map to report (everything is mapped).
   */
  mapping?(offset: number, length: number, maxExtents?: number): Promise<MappingExtent[]>;
  /**
   * Set by the owner to hear of faults the backstore finds by itself, outside any command (a backing file that
   * shrank under the LU, code 'ESHRUNK'). Optional: a backstore may never call it.
   */
  onFault?: (e: Error) => void;
  /**
   * Serve `sizeBytes` from now on (a live resize; the portal has grown the file first, or shrinks it after).
   * Throws, keeping the old size, when the medium is smaller. Optional: without it the LU cannot be resized.
   */
  resize?(sizeBytes: number): void;
  close(): Promise<void>;
}

/**
 * Append [offset, offset + length) to an allocation map under construction, merging it into the last extent
 * when that one ends where this starts with the same status. False (nothing appended) when a new extent is
 * needed and `list` already holds `max`: the map is then complete as far as it goes.
 */
export function appendExtent(
  list: MappingExtent[],
  max: number,
  offset: number,
  length: number,
  mapped: boolean,
): boolean {
  if (length <= 0) return true;
  const last = list.length > 0 ? list[list.length - 1] : undefined;
  if (last !== undefined && last.mapped === mapped && last.offset + last.length === offset) {
    last.length += length;
    return true;
  }
  if (list.length >= max) return false;
  list.push({ offset, length, mapped });
  return true;
}
