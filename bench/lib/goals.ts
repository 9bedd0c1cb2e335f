/**
 * The performance goals of issue 12, judged from this run's own figures: each goal against each backing it
 * can be read on, marked met or not. Generated from the same rows as the tables, so it cannot disagree with
 * them. Memory (1,000 sessions) is a separate benchmark (bench/sessions.ts) and is not judged here.
 */
import { DIGEST_FIGURES, digestAgg, type DigestSection } from './digests';
import { type Row } from './report';

export interface Goal {
  goal: string;
  where: string;
  measured: string;
  /** undefined: no valid figure to judge. */
  met: boolean | undefined;
}

/** SPDK's iSCSI target: about 117K 4K IOPS per core, 8.5 µs of CPU per I/O (the bar). */
export const QD32_CPU_US = 8.5;
export const QD32_RATIO = 3;
export const QD1_RATIO = 1.3;
export const WRITE_1M_RATIO = 2;
export const DIGEST_RATIO = 0.97;

export function goals(rs: Row[], digests?: DigestSection): Goal[] {
  const out: Goal[] = [];
  const judge = (x: number, ok: (v: number) => boolean) => (Number.isFinite(x) ? ok(x) : undefined);
  const pick = (ids: string[]) => rs.filter((r) => ids.includes(r.f.id));
  const where = (r: Row) => `${r.kind}, ${r.f.label}`;
  const ratioGoal = (goal: string, r: Row, bar: number): Goal => ({
    goal,
    where: where(r),
    measured: Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}×` : 'no valid pair',
    met: judge(r.ratio, (v) => v >= bar),
  });
  for (const r of pick(['rr-qd32', 'rw-qd32'])) {
    out.push({
      goal: `4K QD32: ≤ ${QD32_CPU_US} µs of target CPU per I/O`,
      where: where(r),
      measured: Number.isFinite(r.nodetgt.cpu) ? `${r.nodetgt.cpu.toFixed(1)} µs` : 'no valid run',
      met: judge(r.nodetgt.cpu, (v) => v <= QD32_CPU_US),
    });
    out.push(ratioGoal(`4K QD32: ≥ ${QD32_RATIO}× the best peer (tgtd)`, r, QD32_RATIO));
  }
  for (const r of pick(['rr-qd1', 'rw-qd1', 'rr-qd1-pin', 'rw-qd1-pin']))
    out.push(ratioGoal(`4K QD1: ≥ ${QD1_RATIO}× tgtd`, r, QD1_RATIO));
  for (const r of pick(['sw-qd16']))
    out.push(
      ratioGoal(
        `1 MiB write: ≥ ${WRITE_1M_RATIO}× the best peer (the issue says QD8; this matrix runs QD16)`,
        r,
        WRITE_1M_RATIO,
      ),
    );
  if (digests) {
    for (const f of DIGEST_FIGURES) {
      const ratio =
        digestAgg(digests, 'nodetgt', f.id, 'on').value / digestAgg(digests, 'nodetgt', f.id, 'off').value;
      if (!Number.isFinite(ratio) && !digests.samples.some((s) => s.figure === f.id)) continue;
      out.push({
        goal: `header and data digests on: ≥ ${DIGEST_RATIO} of off (own initiator)`,
        where: `${digests.kind}, ${f.label}`,
        measured: Number.isFinite(ratio) ? ratio.toFixed(3) : 'no valid pair',
        met: judge(ratio, (v) => v >= DIGEST_RATIO),
      });
    }
    const q =
      digestAgg(digests, 'nodetgt', 'rr-qd32', 'qemu-hd').value /
      digestAgg(digests, 'nodetgt', 'rr-qd32', 'qemu-none').value;
    if (Number.isFinite(q))
      out.push({
        goal: `header digest on (QEMU asks for no data digest): ≥ ${DIGEST_RATIO} of off`,
        where: `${digests.kind}, 4K rand read QD32, qemu-img`,
        measured: q.toFixed(3),
        met: q >= DIGEST_RATIO,
      });
  }
  return out;
}

export function goalLines(rs: Row[], digests?: DigestSection): string[] {
  const gs = goals(rs, digests);
  if (!gs.length) return [];
  const mark = (m: boolean | undefined) => (m === undefined ? '—' : m ? 'met' : '**not met**');
  const met = gs.filter((g) => g.met === true).length;
  const judged = gs.filter((g) => g.met !== undefined).length;
  return [
    '### Performance goals (issue 12), judged on this run',
    '',
    `${met} of ${judged} judged figures meet their goal. Each goal is read on every backing and figure it ` +
      'applies to; the issue stated its bars on tmpfs. The 1,000-session memory goal is bench/sessions.ts.',
    '',
    '| goal | where | measured | |',
    '|---|---|--:|---|',
    ...gs.map((g) => `| ${g.goal} | ${g.where} | ${g.measured} | ${mark(g.met)} |`),
    '',
  ];
}
