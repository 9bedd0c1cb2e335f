/** The config of an rbd LUN: what is accepted, what is refused and how it is reported (no cluster needed). */
import test from 'ava';
import { normalizeConfig } from '../src/config/schema';

const T = 'iqn.2026-11.io.example:rbd';
const cfg = (...luns: unknown[]) => normalizeConfig({ targets: [{ name: T, luns }] }, '/srv/iscsi');
const rbd = (o: Record<string, unknown> = {}) => ({
  lun: 0,
  backstore: 'rbd',
  pool: 'rbd',
  image: 'vm1',
  ...o,
});

test('an rbd LUN with every setting', (t) => {
  const l = cfg(
    rbd({
      namespace: 'ns1',
      cephConf: 'ceph/ceph.conf',
      clientId: 'iscsi',
      size: '10G',
      create: true,
      rbdCache: true,
      opTimeout: 10,
      blockSize: 4096,
    }),
  ).targets[0].luns[0];
  t.is(l.backstore, 'rbd');
  t.deepEqual(l.rbd, {
    pool: 'rbd',
    image: 'vm1',
    namespace: 'ns1',
    cephConf: '/srv/iscsi/ceph/ceph.conf',
    clientId: 'iscsi',
    cache: true,
    opTimeout: 10,
    create: true,
  });
  t.is(l.size, 10 * 1024 ** 3);
  t.is(l.blockSize, 4096);
});

test('defaults: admin from the default conf, no cache, 30 s, no creation', (t) => {
  const l = cfg(rbd()).targets[0].luns[0];
  t.deepEqual(l.rbd, {
    pool: 'rbd',
    image: 'vm1',
    namespace: undefined,
    cephConf: undefined,
    clientId: undefined,
    cache: false,
    opTimeout: 30,
    create: false,
  });
});

test('refused: what an rbd LUN needs or cannot have, rbd keys elsewhere, one image twice', (t) => {
  const refused: Array<[unknown[], RegExp]> = [
    [[{ lun: 0, backstore: 'rbd', image: 'x' }], /'pool' is required for an rbd backstore/],
    [[rbd({ image: 'a/b' })], /'image' must be a name without '\/'/],
    [[rbd({ path: 'x.img' })], /an rbd backstore has no 'path'/],
    [[rbd({ create: true })], /'create' needs the 'size'/],
    [[rbd({ clientId: 'client.admin' })], /'clientId' is the id without 'client.'/],
    [[rbd({ opTimeout: 0 })], /opTimeout/],
    [[{ lun: 0, path: 'a.img', pool: 'rbd' }], /'pool' is for an rbd backstore/],
    [[{ lun: 0, backstore: 'ceph', pool: 'rbd' }], /'backstore' must be 'file', 'null' or 'rbd'/],
    [[rbd(), rbd({ lun: 1 })], /rbd image rbd\/vm1 is already LUN 0/],
  ];
  for (const [luns, re] of refused) t.throws(() => cfg(...luns), { message: re }, JSON.stringify(luns));
});
