/**
 * What one I_T nexus sees of a target: its LUNs and, for each, the logical unit and whether this nexus may
 * only read it. Built once per session (at login, and again when the target's host mappings change), so a
 * command costs the one Map lookup the LUN needed anyway. Read-only here is per nexus: the LU's own write
 * protect (read-only backstore, SWP) is shared by every nexus and lives in the LU.
 */
import type { LogicalUnit } from './lu';

export interface LunAccess {
  readonly lu: LogicalUnit;
  /** Writes from this nexus are refused with DATA PROTECT, WRITE PROTECTED; MODE SENSE reports WP = 1. */
  readonly readOnly: boolean;
}

export class LunView {
  private readonly sorted: readonly number[];

  constructor(private readonly map: ReadonlyMap<number, LunAccess>) {
    this.sorted = [...map.keys()].sort((a, b) => a - b);
  }

  /** Every LU of the map, writable as the LU itself allows (a nexus no host mapping names). */
  static all(luns: ReadonlyMap<number, LogicalUnit>): LunView {
    return new LunView(new Map([...luns].map(([n, lu]) => [n, { lu, readOnly: false }])));
  }

  get(lun: number): LunAccess | undefined {
    return this.map.get(lun);
  }

  /** The LUN numbers this nexus sees, ascending (REPORT LUNS). */
  numbers(): readonly number[] {
    return this.sorted;
  }

  /** The access this nexus has to `lu` by whatever LUN it sees it, or undefined when it does not see it. */
  accessTo(lu: LogicalUnit): LunAccess | undefined {
    for (const a of this.map.values()) if (a.lu === lu) return a;
    return undefined;
  }

  entries(): IterableIterator<[number, LunAccess]> {
    return this.map.entries();
  }
}

/** What a change of view means for the nexus, per LU it sees afterwards (unit attentions to raise). */
export interface ViewChange {
  /** The LUN inventory differs (REPORTED LUNS DATA HAS CHANGED on every LU of the new view). */
  inventory: boolean;
  /** LUs whose read-only state for this nexus flipped (their mode parameter header's WP bit changed). */
  writeProtectFlipped: LogicalUnit[];
}

export function viewChange(before: LunView, after: LunView): ViewChange {
  const a = before.numbers();
  const b = after.numbers();
  let inventory = a.length !== b.length || a.some((n, i) => n !== b[i]);
  const writeProtectFlipped: LogicalUnit[] = [];
  for (const [n, acc] of after.entries()) {
    const old = before.get(n);
    if (old?.lu !== acc.lu) inventory = true;
    else if (old.readOnly !== acc.readOnly) writeProtectFlipped.push(acc.lu);
  }
  return { inventory, writeProtectFlipped };
}
