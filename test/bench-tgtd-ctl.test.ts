/** bench/lib/targets.ts: the control-socket numbers drawn for private tgtd instances are ones tgtd accepts. */
import test from 'ava';
import { tgtdControlNumber } from '../bench/lib/targets';

test('tgtd control numbers stay within what tgtd -C accepts (up to 32767)', (t) => {
  for (const r of [0, 0.25, 0.5, 0.75, 0.999999999]) {
    const n = tgtdControlNumber(r);
    t.true(Number.isInteger(n) && n >= 20_000 && n <= 32_767, `${r} -> ${n}`);
  }
});
