/**
 * Persistent reservations shared by several gateways (processes, usually on other nodes) that serve one
 * medium: the state lives in one object of the storage cluster beside the medium (for Ceph RBD, the RADOS
 * object `nodetgt.pr.<image>`), and each gateway keeps a mirror of it in its LU's shared PR document, which the
 * hot path reads as for any LU (dispatcher -> reservationConflict). So a reservation made through gateway A
 * keeps gateway B's other initiators out, and the fencing of a cluster works through any gateway.
 *
 * A change (PERSISTENT RESERVE OUT, RESERVE/RELEASE) is:
 *   1. read the object: its document and its generation (the "gen" xattr, +1 per change);
 *   2. decide against that document (the same pure rules as a local LU, src/scsi/pr-out.ts);
 *   3. compare-and-swap: written only if "gen" is still what was read; else another gateway (or another
 *      worker) changed it first, and the change starts again from 1;
 *   4. apply to this gateway's mirror, then notify the object's watchers: every worker of every gateway
 *      watches it, refreshes its mirror from the object, and only then acknowledges. The command completes
 *      after every watcher has acknowledged (or after notifyTimeoutMs, when a gateway died without its watch
 *      having expired yet: its I/O is gone with it).
 * The mirror only ever moves forward: a document older than the one held (by gen) is ignored.
 *
 * Not shared: unit attentions go to the nexuses of the gateway that made the change (another gateway's
 * initiators are not told that their registration was preempted, but their next command meets the
 * reservation). APTPL is moot: the object outlives every gateway, so the state always persists.
 */
import { log } from '../util/log';
import type { LuShared } from './lu-shared';
import { type PrDoc, docActive } from './pr-doc';

/** What a shared store needs of the object (src/native/rbd.ts RbdImage provides it). */
export interface PrObject {
  /** The object's generation and document ('' when never written); null when the object does not exist. */
  prRead(): Promise<{ gen: string; doc: string } | null>;
  /** Compare-and-swap on the generation: false when it is no longer expectedGen (nothing written). */
  prWrite(expectedGen: string, newGen: string, doc: string): Promise<boolean>;
  /** Resolves when every watcher has acknowledged, rejects on timeout. */
  prNotify(timeoutMs: number): Promise<void>;
  prAck(id: bigint): Promise<void>;
  prRewatch(): Promise<void>;
}

/** A document as stored: the PR document plus the object generation it was written at. */
export type StoredDoc = PrDoc & { storeGen: number };

export interface PrDecision<R> {
  doc?: PrDoc;
  result: R;
}

const MAX_ATTEMPTS = 50;

export class SharedPrStore {
  constructor(
    private readonly shared: LuShared,
    private readonly obj: PrObject,
    private readonly what: Record<string, unknown>,
    private readonly notifyTimeoutMs = 5000,
  ) {}

  /** Read the object and bring this gateway's mirror up to it. */
  async refresh(): Promise<void> {
    const got = await this.obj.prRead();
    if (got !== null) this.apply(Number(got.gen), got.doc);
  }

  /**
   * One change, decided by `decide` against the current shared document (null: none yet). `decide` is pure and
   * may run more than once (after losing a race); it may throw (a ScsiError for a malformed request).
   */
  async change<R>(decide: (cur: PrDoc | null) => PrDecision<R>): Promise<R> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const got = await this.obj.prRead();
      const gen = got === null ? 0 : Number(got.gen);
      const text = got?.doc ?? '';
      if (got !== null) this.apply(gen, text);
      const cur = text === '' ? null : (JSON.parse(text) as PrDoc);
      const out = decide(cur);
      if (out.doc === undefined) return out.result;
      const next = gen + 1;
      const stored: StoredDoc = { ...out.doc, storeGen: next };
      const body = JSON.stringify(stored);
      if (!(await this.obj.prWrite(String(gen), String(next), body))) {
        // Lost the race to another gateway or worker: decide again on what it wrote, after a short pause.
        await new Promise((r) => setTimeout(r, 1 + Math.floor(Math.random() * 5 * (attempt + 1))));
        continue;
      }
      this.apply(next, body);
      try {
        await this.obj.prNotify(this.notifyTimeoutMs);
      } catch (e) {
        log.warn('reservation change: not every gateway acknowledged it in time', {
          ...this.what,
          error: (e as Error).message,
        });
      }
      return out.result;
    }
    throw new Error('reservation state: too many concurrent changes');
  }

  /**
   * A notify on the object (id), or a watch error (err < 0; the watch is renewed). Refresh, then acknowledge:
   * the gateway that changed the state waits for this acknowledgement before completing its command.
   */
  onNotify(id: bigint, err: number): void {
    if (err < 0) {
      log.warn('reservation object watch lost; watching again', { ...this.what, err });
      this.rewatch(0);
      return;
    }
    this.refresh()
      .catch((e: Error) =>
        log.error('reservation object: refresh failed', { ...this.what, error: e.message }),
      )
      .finally(() =>
        this.obj
          .prAck(id)
          .catch((e: Error) =>
            log.warn('reservation object: acknowledgement failed', { ...this.what, error: e.message }),
          ),
      );
  }

  /**
   * Watch again until it works (the cluster may still be unreachable): a gateway that no longer watches would
   * miss other gateways' changes. Each attempt waits up to the op timeout; then 1 s between attempts.
   */
  private rewatch(attempt: number): void {
    this.obj
      .prRewatch()
      .then(() => this.refresh())
      .then(() => {
        if (attempt > 0)
          log.info('reservation object watched again', { ...this.what, attempts: attempt + 1 });
      })
      .catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ERR_RBD_CLOSED') return; // the LU closed meanwhile: nothing left to watch for
        if (attempt === 0)
          log.error('reservation object: cannot watch again yet', { ...this.what, error: e.message });
        const timer = setTimeout(() => this.rewatch(attempt + 1), 1000);
        timer.unref();
      });
  }

  /** Install the document at `gen` in the mirror, unless the mirror already holds that one or a later one. */
  private apply(gen: number, text: string): void {
    if (text === '') return;
    this.shared.updatePr<StoredDoc, void>((cur) => {
      if (cur !== null && (cur.storeGen ?? 0) >= gen) return { result: undefined };
      const doc = JSON.parse(text) as StoredDoc;
      doc.storeGen = gen;
      return { doc, active: docActive(doc), result: undefined };
    });
  }
}
