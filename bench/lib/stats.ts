/** Statistics for the benchmarks' A/B comparisons. */

/**
 * A distribution-free 95% confidence interval for the median of xs (paired differences): the order statistics
 * x(k) and x(n+1-k), with k the largest for which P(Binomial(n, 1/2) < k) <= 2.5%. It assumes only that the rounds
 * are independent; no shape of the noise. Null when n is too small for any such k (n < 6).
 */
export function medianCi(xs: number[]): [number, number] | null {
  const n = xs.length;
  const sorted = [...xs].sort((a, b) => a - b);
  // P(B <= j) for B ~ Binomial(n, 1/2), summed term by term.
  let term = 0.5 ** n;
  let cdf = 0;
  let k = 0;
  for (let j = 0; j < n; j++) {
    cdf += term;
    if (cdf > 0.025) break;
    k = j + 1; // P(B <= j) = P(B < j + 1) <= 2.5%
    term = (term * (n - j)) / (j + 1);
  }
  return k >= 1 ? [sorted[k - 1], sorted[n - k]] : null;
}
