/**
 * Test only: a write that is slow, deterministically, as a busy disk would make it. With NODETGT_TEST_HOOKS=1
 * and NODETGT_TEST_SLOW_WRITE=<byte offset>:<ms> in the environment a worker started with, the first write of
 * each worker thread that begins at that byte offset waits <ms> before it is submitted. Tests of task
 * management and session reinstatement use it to have a write in flight when they act. With `all:<ms>`
 * instead, every write waits <ms> (a slow disk, for the backpressure tests). Off (and not even parsed again)
 * otherwise.
 */

interface SlowWrite {
  /** -1: every write. */
  offset: number;
  ms: number;
}

let armed: SlowWrite | null | undefined;

function parse(): SlowWrite | null {
  if (process.env.NODETGT_TEST_HOOKS !== '1') return null;
  const m = /^(\d+|all):(\d+)$/.exec(process.env.NODETGT_TEST_SLOW_WRITE ?? '');
  return m ? { offset: m[1] === 'all' ? -1 : Number(m[1]), ms: Number(m[2]) } : null;
}

/** Milliseconds the write at `offset` is held (once per thread), 0 for every other write. */
export function slowWriteDelay(offset: number): number {
  if (armed === undefined) armed = parse();
  if (armed === null) return 0;
  if (armed.offset === -1) return armed.ms;
  if (armed.offset !== offset) return 0;
  const ms = armed.ms;
  armed = null;
  return ms;
}
