/** Shared fixtures for the SCSI tests: an LU over the memory backstore and CDB builders. */
import type { ExecutionContext } from 'ava';
import { MemoryBackstore, type MemoryBackstoreOptions } from '../src/backstore/memory';
import { ScsiDispatcher, type ScsiResult } from '../src/scsi/dispatcher';
import { LogicalUnit, identityOf, type LuIdentity, type LogicalUnitOptions } from '../src/scsi/lu';
import { generateIdentity } from '../src/backstore/prepare';

export const TARGET = 'iqn.2026-11.org.nodetgt:test';

/** A freshly provisioned identity, as start-up gives each new LU. */
export function testIdentity(target = TARGET, lun = 0): LuIdentity {
  return identityOf(target, lun, generateIdentity());
}

export interface Fixture {
  store: MemoryBackstore;
  lu: LogicalUnit;
  disp: ScsiDispatcher;
  run(cdb: number[] | Buffer, opts?: RunOptions): Promise<ScsiResult>;
}

export interface RunOptions {
  data?: Buffer | Buffer[];
  lun?: number;
  nexus?: string;
  expectedLength?: number;
}

export function fixture(
  storeOpts: Partial<MemoryBackstoreOptions> = {},
  luOpts: LogicalUnitOptions = {},
  lunNumber = 0,
): Fixture {
  const store = new MemoryBackstore({ sizeBytes: 1024 * 512, ...storeOpts });
  const lu = new LogicalUnit(store, testIdentity(TARGET, lunNumber), luOpts);
  const disp = new ScsiDispatcher(new Map([[lunNumber, lu]]));
  return { store, lu, disp, run: runOn(disp, lunNumber) };
}

/** Fixture.run over any dispatcher: `data` makes it a write, none a read. */
export function runOn(disp: ScsiDispatcher, lunNumber = 0): Fixture['run'] {
  return (cdb, opts = {}) => {
    const dataOut = opts.data === undefined ? [] : Array.isArray(opts.data) ? opts.data : [opts.data];
    const buf = Buffer.isBuffer(cdb) ? cdb : Buffer.from(cdb);
    return Promise.resolve(
      disp.execute({
        lun: opts.lun ?? lunNumber,
        cdb: buf,
        expectedLength: opts.expectedLength ?? dataOut.reduce((n, d) => n + d.length, 0),
        readFlag: dataOut.length === 0,
        writeFlag: dataOut.length > 0,
        dataOut,
        nexus: opts.nexus ?? 'iqn.initiator,isid=1,tpgt=1',
      }),
    );
  };
}

export function good(t: ExecutionContext, r: ScsiResult): void {
  t.is(r.status, 0, r.sense ? `sense ${r.sense.subarray(0, 18).toString('hex')}` : 'status');
}

/** Check CHECK CONDITION with fixed sense 70h, additional length 10, key/ASC/ASCQ. */
export function sense(t: ExecutionContext, r: ScsiResult, key: number, asc: number, ascq: number): void {
  t.is(r.status, 2, 'CHECK CONDITION');
  if (!r.sense) return void t.fail('no sense data');
  t.is(r.sense.length, 18);
  t.is(r.sense[0] & 0x7f, 0x70);
  t.is(r.sense[7], 10);
  t.deepEqual([r.sense[2] & 0x0f, r.sense[12], r.sense[13]], [key, asc, ascq]);
}

/** Field pointer of an ILLEGAL REQUEST sense: [C/D, byte, bit or undefined]. */
export function fieldPointer(r: ScsiResult): [boolean, number, number | undefined] | undefined {
  const s = r.sense;
  if (!s || (s[15] & 0x80) === 0) return undefined;
  return [(s[15] & 0x40) !== 0, s.readUInt16BE(16), s[15] & 0x08 ? s[15] & 7 : undefined];
}

export const ILLEGAL = 0x05;

function u64(b: Buffer, v: bigint, off: number): void {
  b.writeBigUInt64BE(BigInt.asUintN(64, v), off);
}

/** 10-byte block CDB: LBA 2-5, length 7-8. */
export function cdb10(op: number, lba: number, len: number, byte1 = 0, group = 0): Buffer {
  const b = Buffer.alloc(10);
  b[0] = op;
  b[1] = byte1;
  b.writeUInt32BE(lba >>> 0, 2);
  b[6] = group;
  b.writeUInt16BE(len, 7);
  return b;
}

/** 12-byte block CDB: LBA 2-5, length 6-9. */
export function cdb12(op: number, lba: number, len: number, byte1 = 0): Buffer {
  const b = Buffer.alloc(12);
  b[0] = op;
  b[1] = byte1;
  b.writeUInt32BE(lba >>> 0, 2);
  b.writeUInt32BE(len, 6);
  return b;
}

/** 16-byte block CDB: LBA 2-9, length 10-13. */
export function cdb16(op: number, lba: bigint | number, len: number, byte1 = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = op;
  b[1] = byte1;
  u64(b, BigInt(lba), 2);
  b.writeUInt32BE(len, 10);
  return b;
}

/** WRITE ATOMIC(16): LBA 2-9, ATOMIC BOUNDARY 10-11, TRANSFER LENGTH 12-13. */
export function cdbAtomic(lba: number, blocks: number, byte1 = 0, boundary = 0): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x9c;
  c[1] = byte1;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt16BE(boundary, 10);
  c.writeUInt16BE(blocks, 12);
  return c;
}

/** COMPARE AND WRITE: LBA 2-9, NUMBER OF LOGICAL BLOCKS byte 13. */
export function cdbCaw(lba: number, blocks: number, byte1 = 0): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x89;
  c[1] = byte1;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c[13] = blocks;
  return c;
}

export function cdb6(op: number, lba: number, len: number): Buffer {
  return Buffer.from([op, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, len, 0]);
}

export function pattern(length: number, seed = 1): Buffer {
  const b = Buffer.alloc(length);
  let x = seed * 2654435761;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
