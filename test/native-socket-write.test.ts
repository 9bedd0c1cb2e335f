/** src/native socketWrite: one write(2) that answers a byte count or -errno and never throws for a failed write. */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { socketWrite } from '../src/native';

test('socketWrite: bytes written, -EBADF on a closed descriptor, TypeError on bad arguments', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-sockwrite-'));
  try {
    const file = path.join(dir, 'out');
    const fd = fs.openSync(file, 'w');
    const data = Buffer.from('0123456789abcdef');
    t.is(socketWrite(fd, data), 16);
    t.is(socketWrite(fd, data.subarray(4, 8)), 4);
    fs.closeSync(fd);
    t.is(fs.readFileSync(file, 'latin1'), '0123456789abcdef4567');
    t.is(socketWrite(fd, data), -os.constants.errno.EBADF);
    t.throws(() => socketWrite(-1, data), { instanceOf: TypeError });
    t.throws(() => socketWrite(1, 'text' as unknown as Buffer), { instanceOf: TypeError });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
