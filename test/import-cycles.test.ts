/**
 * A permanent guard against import cycles (DESIGN.md: a module lower in the house never imports one above it).
 *
 * Two graphs are checked. The runtime one comes from the compiled dist/src (the `require` calls tsc emitted):
 * a cycle there changes what a module sees at load time. The other comes from the TypeScript sources, whose
 * `from '...'` clauses include the type-only imports that vanish from the JavaScript: a type cycle loads fine
 * but still ties two layers together, which is what the layering rule forbids.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';

const DIST_SRC = path.resolve(__dirname, '..', 'src');
/** dist/test -> the repository's src/. */
const SRC = path.resolve(__dirname, '..', '..', 'src');

function files(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p, ext));
    else if (e.name.endsWith(ext)) out.push(p);
  }
  return out;
}

/** Module id (path under `root` without extension) -> the local modules it imports. */
function graph(root: string, ext: '.js' | '.ts', pattern: RegExp): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const file of files(root, ext)) {
    if (file.endsWith('.d.ts')) continue;
    const id = path.relative(root, file).slice(0, -ext.length);
    // A compiled module whose source is gone (moved or deleted since the last clean build) is not ours.
    if (!fs.existsSync(path.join(SRC, `${id}.ts`))) continue;
    const deps = new Set<string>();
    for (const m of fs.readFileSync(file, 'utf8').matchAll(pattern)) {
      const spec = m[1];
      if (!spec.startsWith('.')) continue;
      let dep = path.relative(root, path.resolve(path.dirname(file), spec));
      if (fs.existsSync(path.join(root, dep, `index${ext}`))) dep = path.join(dep, 'index');
      deps.add(dep.replace(/\.js$/, ''));
    }
    g.set(id, [...deps]);
  }
  return g;
}

/** Every elementary cycle found by a depth-first search, each once (as the path that closes it). */
export function findCycles(g: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of g.get(n) ?? []) {
      const s = state.get(d);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d]);
      else if (s === undefined && g.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...g.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

const REQUIRE = /\brequire\("([^"]+)"\)/g;
/** `import ... from '...'` and `export ... from '...'` at the start of a line (comments never start so). */
const TS_IMPORT = /^(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms;

test('the guard finds a cycle when there is one', (t) => {
  const g = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
  ]);
  t.deepEqual(findCycles(g), [['a', 'b', 'c', 'a']]);
  t.deepEqual(
    findCycles(
      new Map([
        ['a', ['b']],
        ['b', []],
      ]),
    ),
    [],
  );
});

test('the compiled sources have no runtime import cycle', (t) => {
  const g = graph(DIST_SRC, '.js', REQUIRE);
  t.true(g.size > 50, `dist/src was read (${g.size} modules)`);
  t.true(g.get('worker/worker')!.includes('session/connection'), 'require() calls were parsed');
  const cycles = findCycles(g);
  t.deepEqual(cycles, [], cycles.map((c) => c.join(' -> ')).join('\n'));
});

/** Directory -> the other directories its modules import (type-only imports included). */
function layers(g: Map<string, string[]>): Map<string, string[]> {
  const out = new Map<string, Set<string>>();
  for (const [m, deps] of g) {
    const from = path.dirname(m);
    const set = out.get(from) ?? out.set(from, new Set()).get(from)!;
    for (const d of deps) if (path.dirname(d) !== from) set.add(path.dirname(d));
  }
  return new Map([...out].map(([k, v]) => [k, [...v]]));
}

/**
 * Directory cycles through type-only imports that predate this guard, to be taken apart (moving the shared
 * types down) and then removed from here. A cycle through any other edge fails.
 */
const KNOWN_LAYER_EDGES = new Set(['backstore->scsi', 'scsi->backstore', 'config->login', 'login->config']);

test('no import cycle between directories (layers), type-only imports included', (t) => {
  const g = graph(SRC, '.ts', TS_IMPORT);
  t.true(g.size > 50, `src was read (${g.size} modules)`);
  t.true(g.get('worker/task')!.includes('worker/pending-logins'), 'import type clauses were parsed');
  const cycles = findCycles(layers(g)).filter((c) =>
    c.slice(1).some((to, i) => !KNOWN_LAYER_EDGES.has(`${c[i]}->${to}`)),
  );
  t.deepEqual(cycles, [], cycles.map((c) => c.join(' -> ')).join('\n'));
  // In particular the three layers the portal/worker boundary crosses.
  const l = layers(g);
  for (const [low, high] of [
    ['session', 'worker'],
    ['worker', 'portal'],
    ['config', 'portal'],
  ])
    t.false(l.get(low)?.includes(high), `${low}/ imports ${high}/`);
});
