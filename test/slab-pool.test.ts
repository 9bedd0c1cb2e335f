/**
 * Receive slabs (src/util/slab-pool.ts) and the worker's backstore queue (src/session/backpressure.ts), in
 * isolation: a slab is reused only once its reader moved on and every retained view was released; free slabs
 * are kept up to the cap; a PDU parsed out of a slab keeps its bytes while retained, whatever the slab's next
 * users write; the queue stops connections past its high-water mark and restarts them at the low-water mark.
 */
import test from 'ava';
import { LARGE_SLAB, SMALL_SLAB, SlabPool, SlabReader } from '../src/util/slab-pool';
import { BackstoreQueue, STOP_BACKSTORE, type ReadGate } from '../src/session/backpressure';
import { PduParser } from '../src/pdu/parser';
import type { Pdu } from '../src/pdu/pdu';
import { encodeDataOut, frameToBuffer } from '../src/pdu/serializer';

/** A socket read of `bytes` through the reader, as the worker's onread does; returns the chunk's length. */
function read(reader: SlabReader, bytes: Buffer, parser?: PduParser): number {
  const buf = reader.next();
  const n = Math.min(buf.length, bytes.length);
  bytes.copy(buf, 0, 0, n);
  const chunk = reader.chunk(n, buf);
  parser?.push(chunk);
  reader.parsed();
  return n;
}

test('a slab comes back only when its reader moved on and its views are released', (t) => {
  const pool = new SlabPool(8 * SMALL_SLAB);
  const partial = false;
  const reader = new SlabReader(pool, () => partial);
  const first = reader.next();
  t.is(first.length, SMALL_SLAB, 'a new connection reads into a small slab');
  t.is(pool.allocations, 1);
  const view = first.subarray(0, 100);
  pool.retain(view);
  t.is(pool.refsOf(view), 2, "the reader's hold and the view's");
  // Reads of 4 KiB until the reader leaves the slab.
  let reads = 0;
  while (reader.next().buffer === first.buffer) {
    read(reader, Buffer.alloc(4096, 1));
    reads++;
  }
  t.true(reads > 8 && reads < 16, `${reads} reads of 4 KiB into a 64 KiB slab`);
  t.is(pool.refsOf(view), 1, 'the reader let go; the view still holds it');
  t.is(pool.pooledBytes, 0);
  pool.release(view);
  t.is(pool.refsOf(view), 0);
  t.is(pool.pooledBytes, SMALL_SLAB, 'back in the pool');
  // Further slabs come from the pool, not from new allocations.
  for (let i = 0; i < 5 * reads; i++) read(reader, Buffer.alloc(4096, 2));
  t.is(pool.allocations, 2);
  t.true(pool.reuses >= 4, `${pool.reuses} reuses`);
  reader.close();
  t.is(pool.allocatedBytes, 2 * SMALL_SLAB);
  t.is(pool.pooledBytes, 2 * SMALL_SLAB, 'a closed reader gives its slabs back');
  reader.next(); // Node asks once more after the read that closed the socket
  t.is(pool.allocations, 2, 'a closed reader takes no slab');
  t.throws(() => pool.unref({ refs: 0, buf: first } as never), { message: /released more often/ });
});

test('free slabs past the cap go back to the allocator', (t) => {
  const changes: number[] = [];
  const pool = new SlabPool(2 * SMALL_SLAB, (a) => changes.push(a));
  const slabs = [1, 2, 3, 4].map(() => pool.take(SMALL_SLAB));
  t.is(pool.allocatedBytes, 4 * SMALL_SLAB);
  for (const s of slabs) pool.unref(s);
  t.is(pool.pooledBytes, 2 * SMALL_SLAB, 'two kept');
  t.is(pool.allocatedBytes, 2 * SMALL_SLAB, 'two dropped');
  t.is(
    changes.reduce((a, b) => a + b, 0),
    pool.allocatedBytes,
    'the gauge callback adds up to allocatedBytes',
  );
  // A dropped slab is no longer known: retaining a view of it does nothing.
  pool.retain(slabs[3]!.buf);
  t.is(pool.refsOf(slabs[3]!.buf), 0);
  // Memory the pool never made is ignored.
  const other = Buffer.alloc(10);
  pool.retain(other);
  pool.release(other);
  t.is(pool.refsOf(other), 0);
});

test('a read that fills its buffer moves the connection to large slabs, small reads bring it back', (t) => {
  const pool = new SlabPool(64 * 1024 * 1024);
  const reader = new SlabReader(pool, () => false);
  t.is(read(reader, Buffer.alloc(SMALL_SLAB, 7)), SMALL_SLAB); // filled all it was offered: more was waiting
  t.is(reader.next().length, LARGE_SLAB);
  // Reads of n bytes until the reader moves on (the offer shrinks as a slab fills; a new slab offers all of
  // itself); returns what the new slab offers.
  const untilNext = (n: number): number => {
    for (let left = reader.next().length; ;) {
      read(reader, Buffer.alloc(n));
      const now = reader.next().length;
      if (now > left || now === SMALL_SLAB) return now;
      left = now;
    }
  };
  // Bulk reads that never fill the rest of a large slab (more than a small slab takes): the next is large too.
  t.is(untilNext(100 * 1024), LARGE_SLAB);
  // Small reads only (a few 4 KiB PDUs each) until the large slab is left: the one after is small again.
  t.is(untilNext(16 * 1024), SMALL_SLAB);
  reader.close();
});

test('the slab a partial PDU began in stays held until the PDU is complete', (t) => {
  const pool = new SlabPool(64 * 1024 * 1024);
  const got: Pdu[] = [];
  const parser: PduParser = new PduParser({
    onPdu: (p) => {
      pool.retain(p.bhs);
      pool.retain(p.data);
      got.push(p);
    },
    onError: (e) => t.fail(e.message),
    maxDataSegmentLength: 262144,
    retainChunks: true,
  });
  const reader = new SlabReader(pool, () => !parser.idle);
  const payload = Buffer.alloc(40 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
  const pdu = frameToBuffer(
    encodeDataOut({ final: true, itt: 1, ttt: 0xffffffff, expStatSN: 0, dataSN: 0, bufferOffset: 0 }),
    payload,
    { headerDigest: false, dataDigest: false },
  );
  // Fill the first slab so that after the PDU's first 48 + 20 KiB only 8 KiB are left (short: a new slab).
  const firstSlab = reader.next().buffer;
  read(reader, Buffer.alloc(SMALL_SLAB - 8 * 1024 - 48 - 20 * 1024)); // a filler that is not a PDU: no parser
  t.is(read(reader, pdu.subarray(0, 48 + 20 * 1024), parser), 48 + 20 * 1024);
  t.false(parser.idle);
  t.not(reader.next().buffer, firstSlab, 'the tail was short: a new slab');
  // The first slab is left by the reader but the parser holds the header and 20 KiB of data in it.
  t.is(pool.refsOf(Buffer.from(firstSlab)), 1);
  read(reader, pdu.subarray(48 + 20 * 1024), parser);
  t.true(parser.idle);
  t.is(got.length, 1);
  t.deepEqual(got[0]!.data, payload, 'assembled across two slabs, intact');
  // Now only the delivered PDU's header (retained) holds the first slab; the data is a copy.
  t.is(pool.refsOf(Buffer.from(firstSlab)), 1);
  pool.release(got[0]!.bhs);
  pool.release(got[0]!.data);
  t.is(pool.refsOf(Buffer.from(firstSlab)), 0);
  reader.close();
});

test('retained PDU data stays intact while other connections recycle slabs around it', (t) => {
  const pool = new SlabPool(4 * SMALL_SLAB);
  const held: Array<{ pdu: Pdu; expect: Buffer }> = [];
  const readers = [0, 1, 2, 3].map(() => {
    const parser: PduParser = new PduParser({
      onPdu: (p) => {
        pool.retain(p.data);
        held.push({ pdu: p, expect: Buffer.from(p.data) });
      },
      onError: (e) => t.fail(e.message),
      maxDataSegmentLength: 262144,
      retainChunks: true,
    });
    const reader = new SlabReader(pool, () => !parser.idle);
    return { reader, parser };
  });
  let seq = 0;
  for (let round = 0; round < 400; round++) {
    const r = readers[round % readers.length]!;
    const payload = Buffer.alloc(4096, seq++ & 0xff);
    read(
      r.reader,
      frameToBuffer(
        encodeDataOut({ final: true, itt: seq, ttt: 0xffffffff, expStatSN: 0, dataSN: 0, bufferOffset: 0 }),
        payload,
        { headerDigest: false, dataDigest: false },
      ),
      r.parser,
    );
    // Release the older half of what is held, like commands completing out of order.
    if (held.length > 12) {
      for (const h of held.splice(0, 6)) {
        t.deepEqual(h.pdu.data, h.expect);
        pool.release(h.pdu.data);
      }
    }
  }
  for (const h of held) t.deepEqual(h.pdu.data, h.expect, 'never overwritten while retained');
  t.true(pool.reuses > 10, `slabs were reused (${pool.reuses})`);
  t.true(pool.allocations < 20, `and few were made (${pool.allocations})`);
  for (const h of held) pool.release(h.pdu.data);
  for (const r of readers) r.reader.close();
  t.is(pool.allocatedBytes - pool.pooledBytes, 0, 'nothing left in use');
});

test('the backstore queue stops connections past the high-water mark and restarts them at the low one', (t) => {
  const q = new BackstoreQueue(1000, 400);
  const log: string[] = [];
  const conn = (name: string): ReadGate => ({
    stopReading: (r) => log.push(`${name} stop ${r}`),
    startReading: (r) => log.push(`${name} start ${r}`),
  });
  const a = conn('a');
  const b = conn('b');
  q.add(600);
  t.false(q.over);
  t.false(q.hold(a), 'under the mark: nothing held');
  q.add(600);
  t.true(q.over);
  t.true(q.hold(a));
  t.false(q.hold(a), 'once');
  t.true(q.hold(b));
  q.forget(b); // b closed
  q.done(600);
  t.true(q.over, 'at 600: above the low-water mark');
  t.is(q.holding, 1);
  q.done(200);
  t.false(q.over);
  t.is(q.holding, 0);
  t.deepEqual(log, [`a stop ${STOP_BACKSTORE}`, `b stop ${STOP_BACKSTORE}`, `a start ${STOP_BACKSTORE}`]);
  t.is(q.overs, 1);
});
