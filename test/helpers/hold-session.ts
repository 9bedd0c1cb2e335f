/**
 * An initiator process that logs in and keeps reading until told to stop: for tests that need a live session
 * in another network namespace (run it with `ip netns exec NS node dist/test/helpers/hold-session.js`).
 *
 * usage: hold-session.js HOST PORT TARGET [SECONDS]
 * Prints "READY" once logged in and a first 1 MiB read is back, then reads 1 MiB every 200 ms until SIGTERM
 * or SECONDS (default 60) pass; then logs out.
 */
import { TestInitiator, defaultOperationalKeys } from './initiator';

const READ_10 = 0x28;
const MIB_BLOCKS = 2048; // 512-byte blocks

function read10(lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = READ_10;
  cdb.writeUInt32BE(lba, 2);
  cdb.writeUInt16BE(blocks, 7);
  return cdb;
}

async function main(): Promise<void> {
  const [host, port, target, seconds = '60'] = process.argv.slice(2);
  if (!host || !port || !target) throw new Error('usage: hold-session.js HOST PORT TARGET [SECONDS]');
  const ini = await TestInitiator.connect(Number(port), host);
  const r = await ini.login({ targetName: target, keys: defaultOperationalKeys() });
  if (r.status !== 0) throw new Error(`login failed with status 0x${r.status.toString(16)}`);
  const read = () => ini.scsi(read10(0, MIB_BLOCKS), { edtl: MIB_BLOCKS * 512, read: true });
  await read();
  process.stdout.write('READY\n');
  let stop = false;
  const end = () => (stop = true);
  process.on('SIGTERM', end);
  const until = Date.now() + Number(seconds) * 1000;
  while (!stop && Date.now() < until) {
    await read();
    await new Promise((res) => setTimeout(res, 200));
  }
  await ini.logout().catch(() => undefined);
  ini.close();
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    process.stderr.write(`hold-session: ${e.message}\n`);
    process.exit(1);
  },
);
