/**
 * Map and Set that keep their hash table when they empty out, for tables that go from empty to one entry and
 * back once per command (a connection's task table and a session's running commands, at queue depth 1).
 *
 * V8 shrinks a Map or Set once its count falls under half its buckets; for the smallest table (2 buckets) that is
 * every delete of the last entry, and shrinking allocates a new table in a runtime call: about 2.5% of the
 * worker's CPU per QD1 WRITE in perf (bench/qd1.ts --kinds null). A hidden first entry, never deleted, keeps the
 * count at one or more, so the smallest table stays as it is. Insertion order, and so iteration, is otherwise
 * that of a Map or Set.
 */
const HIDDEN: unique symbol = Symbol('stable-collections: hidden entry');

export class StableMap<K, V> implements Iterable<[K, V]> {
  private readonly m = new Map<K | typeof HIDDEN, V | undefined>([[HIDDEN, undefined]]);

  get size(): number {
    return this.m.size - 1;
  }
  get(key: K): V | undefined {
    return this.m.get(key);
  }
  has(key: K): boolean {
    return this.m.has(key);
  }
  set(key: K, value: V): this {
    this.m.set(key, value);
    return this;
  }
  delete(key: K): boolean {
    return this.m.delete(key);
  }
  *entries(): IterableIterator<[K, V]> {
    const it = this.m.entries();
    it.next(); // the hidden entry, always first
    for (const e of it) yield e as [K, V];
  }
  *keys(): IterableIterator<K> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }
}

export class StableSet<T> implements Iterable<T> {
  private readonly s = new Set<T | typeof HIDDEN>([HIDDEN]);

  get size(): number {
    return this.s.size - 1;
  }
  has(value: T): boolean {
    return this.s.has(value);
  }
  add(value: T): this {
    this.s.add(value);
    return this;
  }
  delete(value: T): boolean {
    return this.s.delete(value);
  }
  *values(): IterableIterator<T> {
    const it = this.s.values();
    it.next(); // the hidden entry, always first
    for (const v of it) yield v as T;
  }
  [Symbol.iterator](): IterableIterator<T> {
    return this.values();
  }
}
