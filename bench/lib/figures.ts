/**
 * What the side-by-side benchmark measures: one figure per I/O pattern, and the groups the generated
 * summary speaks about.
 */

export interface Figure {
  id: string;
  label: string;
  write: boolean;
  bs: number;
  qd: number;
  random: boolean;
  /** Target (all threads) and qemu-img on CPU 0. */
  pinned: boolean;
  /** First guess at operations per second, to size the calibration run. */
  guess: number;
}

export const K4 = 4096;
export const M1 = 1 << 20;

const fig = (
  id: string,
  label: string,
  write: boolean,
  bs: number,
  qd: number,
  pinned: boolean,
  guess: number,
): Figure => ({ id, label, write, bs, qd, random: bs === K4, pinned, guess });

export const FIGURES: Figure[] = [
  fig('rr-qd1', '4K rand read QD1', false, K4, 1, false, 4000),
  fig('rw-qd1', '4K rand write QD1', true, K4, 1, false, 4000),
  fig('rr-qd32', '4K rand read QD32', false, K4, 32, false, 25000),
  fig('rw-qd32', '4K rand write QD32', true, K4, 32, false, 25000),
  fig('sr-qd16', '1M seq read QD16', false, M1, 16, false, 600),
  fig('sw-qd16', '1M seq write QD16', true, M1, 16, false, 500),
  fig('rr-qd1-pin', '4K rand read QD1 pinned', false, K4, 1, true, 10000),
  fig('rw-qd1-pin', '4K rand write QD1 pinned', true, K4, 1, true, 10000),
];

/** The summary speaks of these groups, per backing: the min-max of their figures' ratios. */
export const GROUPS: { name: string; ids: string[] }[] = [
  { name: '4K QD32', ids: ['rr-qd32', 'rw-qd32'] },
  { name: '1 MiB QD16', ids: ['sr-qd16', 'sw-qd16'] },
  { name: '4K QD1', ids: ['rr-qd1', 'rw-qd1'] },
  { name: '4K QD1 pinned', ids: ['rr-qd1-pin', 'rw-qd1-pin'] },
];

// qemu-img bench has no random mode. It walks offset += step modulo the image size; with a step of
// an odd number of 4 KiB blocks over a power-of-two size (1 GiB, or 1 TiB for tgtd's null LUN)
// the walk visits every block once before repeating. 162013 ~ 0.618 * 2^18 spreads it well.
export const RANDOM_STEP = 162013 * K4;

export const isIops = (f: Figure) => f.bs === K4;
export const unit = (f: Figure) => (isIops(f) ? 'IOPS' : 'MB/s');
/** IOPS for 4K, MB/s (10^6 bytes) for 1M. */
export const fmtRate = (f: Figure, opsPerSec: number) => (isIops(f) ? opsPerSec : (opsPerSec * f.bs) / 1e6);
