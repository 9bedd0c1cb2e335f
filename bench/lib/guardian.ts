/**
 * Cleans up after a side-by-side benchmark that could not clean up itself (SIGKILL, a crash before
 * its exit handlers ran): the benchmark starts this detached, with the path of a state file naming
 * the benchmark's own process and the targets and files it created, and keeps that file current.
 * Every half second: state file gone = the benchmark finished and cleaned up, exit; benchmark
 * process gone = kill the processes listed (each checked by its start time, so a reused pid is
 * never hit), remove the files and the state file, exit.
 *
 *   node dist/bench/lib/guardian.js STATE_FILE
 */
import * as fs from 'node:fs';
import { procStart } from './sys';

export interface ProcRef {
  pid: number;
  start: string;
}
export interface GuardState {
  bench: ProcRef;
  /** Each is the leader of its own process group (spawned detached): the group is killed. */
  procs: ProcRef[];
  files: string[];
}

export const procRef = (pid: number): ProcRef | undefined => {
  const start = procStart(pid);
  return start === undefined ? undefined : { pid, start };
};

function sweep(state: GuardState): void {
  for (const p of state.procs)
    if (procStart(p.pid) === p.start)
      for (const target of [-p.pid, p.pid])
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          /* gone, or not a group leader */
        }
  for (const f of state.files) fs.rmSync(f, { force: true });
}

function watch(file: string): void {
  if (!fs.existsSync(file)) process.exit(0); // the benchmark finished and cleaned up
  let state: GuardState | undefined;
  try {
    state = JSON.parse(fs.readFileSync(file, 'utf8')) as GuardState;
  } catch {
    /* the benchmark writes it with a rename, but be safe: read it again next time */
  }
  if (state && procStart(state.bench.pid) !== state.bench.start) {
    sweep(state);
    fs.rmSync(file, { force: true });
    process.exit(0);
  }
  setTimeout(() => watch(file), 500);
}

if (require.main === module) watch(process.argv[2]!);
