// Micro-benchmark: PduParser throughput on a Data-Out stream read in 64 KiB
// chunks, and encode+frame of Data-In headers. No digests (CRC has its own bench).
// Run: npx tsc -p tsconfig.json && node dist/bench/parser.bench.js

import { PduParser } from '../src/pdu/parser';
import { encodeDataIn, encodeDataOut, frame } from '../src/pdu/serializer';

function bench(name: string, units: string, fn: () => number, ms = 1500): void {
  fn(); // warm up
  let n = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < ms) {
    n += fn();
    elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  console.log(`${name}: ${((n / elapsed) * 1000).toFixed(0)} ${units}/s`);
}

for (const size of [0, 512, 4096, 65536]) {
  const one = Buffer.concat(
    frame(
      encodeDataOut({ itt: 1, ttt: 2, expStatSN: 3, dataSN: 0, bufferOffset: 0 }),
      size ? Buffer.alloc(size, 7) : null,
      {
        headerDigest: false,
        dataDigest: false,
      },
    ),
  );
  const count = Math.max(16, Math.ceil((4 << 20) / one.length));
  const stream = Buffer.concat(Array.from({ length: count }, () => one));
  let got = 0;
  const p = new PduParser({
    maxDataSegmentLength: 1 << 20,
    onPdu: () => void got++,
    onError: () => {
      throw new Error('unexpected');
    },
  });
  const chunk = 64 * 1024;
  bench(`parse Data-Out ${size} B in 64 KiB chunks`, 'PDUs', () => {
    got = 0;
    for (let i = 0; i < stream.length; i += chunk) p.push(stream.subarray(i, i + chunk));
    return got;
  });
}

const payload = Buffer.alloc(4096);
bench('encodeDataIn + frame (4 KiB)', 'PDUs', () => {
  for (let i = 0; i < 10000; i++) {
    const bhs = encodeDataIn({
      final: true,
      statusPresent: true,
      itt: i,
      statSN: i,
      expCmdSN: i,
      maxCmdSN: i + 64,
      dataSN: 0,
      bufferOffset: 0,
    });
    frame(bhs, payload, { headerDigest: false, dataDigest: false });
  }
  return 10000;
});
