/** src/scsi/bufpool.ts: a buffer returned twice is handed out once; releaseIfOwned tells the pool's buffers apart. */
import test from 'ava';
import { BufferPool } from '../src/scsi/bufpool';

test('a buffer released twice goes back to its free list once', (t) => {
  const pool = new BufferPool({ minSize: 4096, maxSize: 1 << 20 });
  const a = pool.acquire(4096);
  pool.release(a);
  pool.release(a);
  const b = pool.acquire(4096);
  const c = pool.acquire(4096);
  t.is(b.buffer, a.buffer);
  t.not(c.buffer, a.buffer, 'not handed out a second time while in use');
  t.is(pool.stats.released, 1);
});

test('releaseIfOwned: true for the pool buffers (in use or idle), false for any other', (t) => {
  const pool = new BufferPool({ minSize: 4096, maxSize: 1 << 20, maxFreePerClass: 1 });
  const other = new BufferPool({ minSize: 4096, maxSize: 1 << 20 });
  const a = pool.acquire(100);
  const b = pool.acquire(100);
  t.false(pool.releaseIfOwned(Buffer.alloc(4096)));
  t.false(pool.releaseIfOwned(other.acquire(4096)));
  t.false(pool.releaseIfOwned(pool.acquire(2 << 20)), 'unpooled: too big');
  t.true(pool.releaseIfOwned(a));
  t.true(pool.releaseIfOwned(a), 'already idle: still the pool one');
  t.true(pool.releaseIfOwned(b), 'free list full: dropped, still the pool one');
  t.is(pool.acquire(4096).buffer, a.buffer);
  t.not(pool.acquire(4096).buffer, b.buffer, 'the dropped one is not kept');
});
