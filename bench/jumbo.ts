/**
 * 1 MiB reads over a veth pair between two network namespaces, at MTU 1500 and at MTU 9000: what jumbo frames
 * are worth to nodetgt on this machine. `nodetgt serve` (null backstore: the network path alone) runs in one
 * namespace, `qemu-img bench` in the other; both ends stay inside the namespaces this script creates and
 * deletes. Needs root, iproute2 and qemu-img (scripts/install-deps.sh --test).
 *
 * usage: node dist/bench/jumbo.js [COUNT=2000] [ROUNDS=2]   (COUNT reads of 1 MiB per run, queue depth 8)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTarget } from '../test/helpers/child-target';
import { createNsPair, netnsUnavailable, writeNsTargetConfig } from '../test/helpers/netns';
import { run } from '../test/helpers/run';

const IQN = 'iqn.2026-11.io.nodetgt.bench:jumbo';
const DEPTH = 8;

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 2000);
  const rounds = Number(process.argv[3] ?? 2);
  const why = netnsUnavailable();
  if (why) throw new Error(why);
  const pair = createNsPair('bench');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-jumbo-'));
  let stop = async () => undefined as void;
  try {
    const config = writeNsTargetConfig(pair, dir, IQN, '8G');
    const target = await startChildTarget(['--config', config], { prefix: pair.exec(pair.a) });
    stop = () => target.stop('SIGTERM');
    const rows: Array<{ mtu: number; secs: number }> = [];
    for (let r = 0; r < rounds; r++)
      for (const mtu of [1500, 9000]) {
        // The MSS is fixed at connect: each run's qemu-img logs in anew, at the MTU set just before.
        pair.setMtu(mtu, mtu);
        const args = [
          'bench',
          '-f',
          'raw',
          '-t',
          'none',
          '-s',
          '1M',
          '-d',
          String(DEPTH),
          '-c',
          String(count),
        ];
        args.push(`iscsi://${pair.addrA}:3260/${IQN}/0`);
        const [cmd, ...pre] = pair.exec(pair.b);
        const out = await run(cmd, [...pre, 'qemu-img', ...args], 300_000);
        const m = /Run completed in ([\d.]+) seconds/.exec(out.stdout);
        if (out.code !== 0 || !m)
          throw new Error(`qemu-img bench failed (${out.code}): ${out.stdout}${out.stderr}`);
        rows.push({ mtu, secs: Number(m[1]) });
      }
    const cores = os.cpus().length;
    process.stdout.write(
      `1 MiB reads, queue depth ${DEPTH}, ${count} per run, veth between namespaces, ${cores} cores, ` +
        `${new Date().toISOString().slice(0, 10)}\n\n| MTU | run | seconds | MiB/s |\n| ---: | ---: | ---: | ---: |\n`,
    );
    rows.forEach((x, i) =>
      process.stdout.write(
        `| ${x.mtu} | ${Math.floor(i / 2) + 1} | ${x.secs.toFixed(2)} | ${(count / x.secs).toFixed(0)} |\n`,
      ),
    );
    const best = (mtu: number) => Math.max(...rows.filter((x) => x.mtu === mtu).map((x) => count / x.secs));
    process.stdout.write(
      `\nbest: MTU 1500 ${best(1500).toFixed(0)} MiB/s, MTU 9000 ${best(9000).toFixed(0)} MiB/s\n`,
    );
  } finally {
    await stop();
    pair.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench/jumbo: ${e.message}\n`);
  process.exit(1);
});
