/** socketFd reads Node's private `_handle.fd`: this fails the day a Node release renames or drops it. */
import test from 'ava';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { socketFd } from '../src/util/socket-fd';

test('socketFd gives the real descriptor of a connected TCP socket, and -1 once it is closed', async (t) => {
  let client!: net.Socket;
  const accepted = new Promise<net.Socket>((resolve) => {
    const server = net.createServer((s) => {
      server.close();
      resolve(s);
    });
    server.listen(0, '127.0.0.1', () => {
      client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      client.on('error', () => undefined);
      t.teardown(() => client.destroy());
    });
  });
  const s = await accepted;
  const fd = socketFd(s);
  t.true(Number.isInteger(fd) && fd > 2, `a descriptor, not ${fd}`);
  t.true(fs.fstatSync(fd).isSocket(), 'the descriptor is a socket');
  // Bytes written on the descriptor reach this socket's peer: it is this socket's, not some other one.
  const got = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())));
  t.is(fs.writeSync(fd, 'fd ok'), 5);
  t.is(await got, 'fd ok');
  s.destroy();
  await new Promise((r) => s.once('close', r));
  t.is(socketFd(s), -1);
});

test('socketFd of a socket never connected is -1', (t) => {
  t.is(socketFd(new net.Socket()), -1);
});
