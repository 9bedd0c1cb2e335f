/**
 * The descriptor under a net.Socket. Node has no public API for it: `_handle.fd` is the libuv handle's
 * descriptor, an internal field (stable since Node 0.x, and what every fd-passing module reads). It is read in
 * this one place, never written, so that a Node release that drops it breaks one function and its test
 * (test/socket-fd.test.ts), not the hand-over to workers and the control socket's peer check in silence.
 */
import type { Socket } from 'node:net';

/** The socket's descriptor, or -1 when it has none (closed, or not backed by a descriptor). */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}
