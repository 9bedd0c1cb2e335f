/** bench/lib/stats.ts: the confidence interval the metrics-cost A/B bases its verdict on. */
import test from 'ava';
import { medianCi } from '../bench/lib/stats';

const ranks = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

test('the interval is the order statistics of the binomial tables (n = 6, 10, 30)', (t) => {
  // P(B <= 0) = 1/64 <= 2.5% < P(B <= 1) = 7/64: ranks 1 and 6.
  t.deepEqual(medianCi(ranks(6)), [1, 6]);
  // P(B <= 1) = 11/1024, P(B <= 2) = 56/1024: ranks 2 and 9.
  t.deepEqual(medianCi(ranks(10)), [2, 9]);
  // The usual table: ranks 10 and 21 for n = 30.
  t.deepEqual(medianCi(ranks(30)), [10, 21]);
});

test('below six rounds there is no 95% interval', (t) => {
  t.is(medianCi(ranks(5)), null);
  t.is(medianCi([]), null);
});

test('the order of the input does not matter and the input is left alone', (t) => {
  const xs = [0.03, -0.01, 0.02, 0.0, -0.02, 0.01, 0.05, -0.04, 0.015, 0.005];
  const copy = [...xs];
  t.deepEqual(medianCi(xs), [-0.02, 0.03]);
  t.deepEqual(xs, copy);
});
