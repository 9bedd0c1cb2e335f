/** Helpers for the live configuration tests: SCSI commands by name, sense as text, a child's config file. */
import * as http from 'node:http';
import type { ScsiResult, TestInitiator } from './initiator';

export const TUR = Buffer.alloc(6);

/** 'KK/AA/QQ' of a CHECK CONDITION, or 'status 0xNN'. */
export function senseOf(r: ScsiResult): string {
  if (r.status !== 2 || !r.sense) return `status 0x${r.status.toString(16)}`;
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `${h(r.sense[2] & 0x0f)}/${h(r.sense[12])}/${h(r.sense[13])}`;
}

export async function reportLuns(ini: TestInitiator, lun = 0): Promise<number[]> {
  const cdb = Buffer.alloc(12);
  cdb[0] = 0xa0;
  cdb.writeUInt32BE(4096, 6);
  const r = await ini.scsi(cdb, { lun, edtl: 4096, read: true });
  if (r.status !== 0) throw new Error(`REPORT LUNS: ${senseOf(r)}`);
  const n = r.data.readUInt32BE(0) / 8;
  return Array.from({ length: n }, (_, i) => r.data.readUInt16BE(8 + i * 8) & 0x3fff);
}

/** READ CAPACITY(16): the capacity in bytes, or the sense as text. */
export async function capacity(ini: TestInitiator, lun: number): Promise<number | string> {
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x9e;
  cdb[1] = 0x10;
  cdb.writeUInt32BE(32, 10);
  const r = await ini.scsi(cdb, { lun, edtl: 32, read: true });
  if (r.status !== 0) return senseOf(r);
  return (Number(r.data.readBigUInt64BE(0)) + 1) * r.data.readUInt32BE(8);
}

function rw10(op: number, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = op;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

export function write(ini: TestInitiator, lun: number, lba: number, data: Buffer): Promise<ScsiResult> {
  return ini.scsi(rw10(0x2a, lba, data.length / 512), { lun, edtl: data.length, write: true, data });
}

export function read(ini: TestInitiator, lun: number, lba: number, blocks: number): Promise<ScsiResult> {
  return ini.scsi(rw10(0x28, lba, blocks), { lun, edtl: blocks * 512, read: true });
}

/** A WRITE(10) whose data is kept back until the test answers its R2T: a command in flight. */
export function heldWrite(ini: TestInitiator, lun: number, lba: number, data: Buffer) {
  return ini.start(rw10(0x2a, lba, data.length / 512), {
    lun,
    edtl: data.length,
    write: true,
    data,
    immediate: 0,
    holdData: true,
  });
}

/** Commands until one ends GOOD (a pending unit attention answers the first ones); the senses seen before. */
export async function drainUnitAttentions(ini: TestInitiator, lun: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 10; i++) {
    const r = await ini.scsi(TUR, { lun, edtl: 0 });
    if (r.status === 0) return seen;
    seen.push(senseOf(r));
  }
  throw new Error(`TEST UNIT READY on LUN ${lun} never ended GOOD: ${seen.join(', ')}`);
}

/** The thread ids of the workers serving a connection now, from the Prometheus endpoint. */
export function workersWithConnections(metricsPort: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: metricsPort, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve(
            [...body.matchAll(/^nodetgt_worker_connections\{thread="(\d+)"\} (\d+)$/gm)]
              .filter((m) => Number(m[2]) > 0)
              .map((m) => m[1]),
          ),
        );
      })
      .on('error', reject);
  });
}
