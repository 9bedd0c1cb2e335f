/** src/util/stable-collections.ts: StableMap and StableSet answer as Map and Set do; the hidden entry never shows. */
import test from 'ava';
import { StableMap, StableSet } from '../src/util/stable-collections';

test('StableMap: size, get/has/delete and iteration in insertion order, as a Map', (t) => {
  const m = new StableMap<number, string>();
  const ref = new Map<number, string>();
  t.is(m.size, 0);
  t.deepEqual([...m], []);
  for (let round = 0; round < 3; round++) {
    for (const k of [5, 1, 9, 0]) {
      m.set(k, `v${k}.${round}`);
      ref.set(k, `v${k}.${round}`);
    }
    t.true(m.delete(1));
    ref.delete(1);
    t.false(m.delete(1));
    t.is(m.size, ref.size);
    t.deepEqual([...m], [...ref]);
    t.deepEqual([...m.keys()], [...ref.keys()]);
    t.deepEqual([...m.values()], [...ref.values()]);
    t.is(m.get(9), ref.get(9));
    t.false(m.has(1));
    for (const k of [5, 9, 0]) t.true(m.delete(k));
    ref.clear();
    t.is(m.size, 0);
    t.deepEqual([...m.entries()], []);
  }
});

test('StableSet: size, has/delete and iteration in insertion order, as a Set', (t) => {
  const s = new StableSet<object>();
  const a = {};
  const b = {};
  t.is(s.size, 0);
  s.add(a).add(b).add(a);
  t.is(s.size, 2);
  t.deepEqual([...s], [a, b]);
  t.deepEqual(
    Array.from(s, (x) => x === a),
    [true, false],
  );
  t.true(s.delete(a));
  t.false(s.has(a));
  t.true(s.has(b));
  t.true(s.delete(b));
  t.is(s.size, 0);
  t.deepEqual([...s.values()], []);
});
