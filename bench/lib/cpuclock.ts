/**
 * Another process's CPU time, read at a chosen instant.
 *
 * Preferred: clock_gettime() on the process's CPU clock (CPUCLOCK_SCHED of the whole thread group:
 * every thread's scheduler runtime in ns, exited threads included, io_uring workers included).
 * Node cannot call clock_gettime with an arbitrary clock id, so a small persistent perl process
 * (Time::HiRes, shipped with perl) answers "pid pid ..." with CLOCK_MONOTONIC and each process's CPU
 * time; one round trip over a pipe, well under a millisecond on an idle core. The clock counts ns,
 * but a thread that is on a CPU when it is read has up to one scheduler tick not yet added: at the
 * start of an I/O phase that time is then counted in the phase, where it belongs (the phase has
 * begun), and at its end the target is idle (every response has arrived). So the resolution that
 * matters is the clock's, reported as 1 µs.
 *
 * Fallback when perl or Time::HiRes is missing: utime+stime from /proc/PID/stat, in clock ticks
 * (10 ms at USER_HZ 100). Each of the two fields is truncated to a tick, so the difference of two
 * readings can be off by up to two ticks: that is the resolution reported for this method.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLK_TCK, cpuMicros, track } from './sys';

export interface ClockReading {
  /** CLOCK_MONOTONIC at the reading, seconds (same clock as process.hrtime). */
  mono: number;
  /** CPU time of each pid asked for, in µs; undefined when the process is gone. */
  cpu: (number | undefined)[];
}

// The process CPU clock id of pid, as the kernel encodes it: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
// = (~pid << 3) | 2 = -8 * pid - 6. clock_gettime fails (EINVAL) once the process is gone.
const PERL = `
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);
$| = 1;
while (my $line = <STDIN>) {
  my @out = (sprintf('%.9f', clock_gettime(CLOCK_MONOTONIC)));
  for my $pid (split(' ', $line)) {
    my $t = $pid > 0 ? clock_gettime(-8 * $pid - 6) : -1;
    push @out, $t < 0 ? '-' : sprintf('%.9f', $t);
  }
  print "@out\\n";
}`;

export class CpuClock {
  private helper?: ChildProcess;
  private waiting: ((line: string | undefined) => void)[] = [];
  private buf = '';
  /** The perl helper answered at open(): every reading comes from it (never mix the two methods). */
  private precise = false;
  method = `/proc/PID/stat utime+stime (clock ticks of ${1000 / CLK_TCK} ms)`;
  /** How far a difference of two readings can be off, µs. */
  resolutionUs = (2 * 1e6) / CLK_TCK;

  /** Start the perl helper and check it reads our own CPU clock; else stay on /proc ticks. */
  async open(): Promise<this> {
    const h = track(spawn('perl', ['-e', PERL], { stdio: ['pipe', 'pipe', 'ignore'], detached: true }));
    h.on('error', () => this.drain());
    h.on('exit', () => this.drain());
    h.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      for (let i; (i = this.buf.indexOf('\n')) >= 0;) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiting.shift()?.(line);
      }
    });
    this.helper = h;
    const r = await this.ask([process.pid]);
    if (r && r.cpu[0] !== undefined && r.cpu[0] > 0) {
      this.method = 'clock_gettime() on the process CPU clock (all threads, exited ones included)';
      this.resolutionUs = 1;
      this.precise = true;
    } else this.close();
    return this;
  }

  private drain(): void {
    this.helper = undefined;
    for (const w of this.waiting.splice(0)) w(undefined);
  }

  private ask(pids: number[]): Promise<ClockReading | undefined> {
    const h = this.helper;
    if (!h?.stdin?.writable) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.waiting.push((line) => {
        if (line === undefined) return resolve(undefined);
        const [mono, ...cpu] = line.trim().split(' ');
        resolve({ mono: Number(mono), cpu: cpu.map((x) => (x === '-' ? undefined : Number(x) * 1e6)) });
      });
      h.stdin!.write(`${pids.join(' ')}\n`);
    });
  }

  async read(pids: number[]): Promise<ClockReading> {
    const mono = Number(process.hrtime.bigint()) / 1e9;
    if (this.precise) return (await this.ask(pids)) ?? { mono, cpu: pids.map(() => undefined) };
    return { mono, cpu: pids.map((p) => (p > 0 ? cpuMicros(p) : undefined)) };
  }

  close(): void {
    this.helper?.stdin?.end();
    this.helper?.kill('SIGKILL');
    this.drain();
  }
}
