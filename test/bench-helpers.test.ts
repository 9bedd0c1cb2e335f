/**
 * The benches run as plain node scripts (`node dist/bench/jumbo.js`), not under ava, and some of them start
 * targets and initiators with the test helpers: every helper a bench imports must load without ava, whose
 * module refuses to load outside its CLI ("Test files must be run with the AVA CLI").
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const BENCH = path.resolve(__dirname, '../../bench');
const HELPERS = path.resolve(__dirname, 'helpers');

/** The test helpers the bench sources import (bench/*.ts and bench/lib/*.ts). */
function helpersOfBenches(): string[] {
  const names = new Set<string>();
  for (const dir of [BENCH, path.join(BENCH, 'lib')])
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const src = fs.readFileSync(path.join(dir, f), 'utf8');
      for (const m of src.matchAll(/from '(?:\.\.\/)+test\/helpers\/([\w-]+)'/g)) names.add(m[1]!);
    }
  return [...names].sort();
}

test('every test helper a bench imports loads outside ava', (t) => {
  const helpers = helpersOfBenches();
  t.true(helpers.includes('child-target'), `bench/jumbo.ts starts its target with child-target: ${helpers}`);
  for (const h of helpers) {
    const file = path.join(HELPERS, `${h}.js`);
    t.true(fs.existsSync(file), file);
    // A plain node process, as a bench runs; a require of ava anywhere below the helper fails it.
    const script =
      "const M = require('module'); const load = M._load; M._load = function (r, ...a) { " +
      "if (r === 'ava' || r.startsWith('ava/')) throw new Error('requires ava'); return load.call(this, r, ...a); }; " +
      `require(${JSON.stringify(file)});`;
    t.notThrows(() => execFileSync(process.execPath, ['-e', script], { stdio: 'pipe' }), h);
  }
});
