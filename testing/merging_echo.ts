/**
 * A stream relay in miniature, for tests: a plain echo peer on 127.0.0.1
 * that holds each client's datagrams until `group` of them have come, then
 * sends them back as one datagram, one after another, as a relay through a
 * byte stream (`socat UDP-LISTEN:P,fork PIPE`) can. Unlike socat it merges
 * the same way every time, so a test knows what the client must report:
 * the datagrams it merged, and that none was lost.
 *
 * @example Merge every two probes into one reply
 * ```ts ignore
 * await using peer = startMergingEcho(2);
 * // client.ts -p peer.target.port -c 10: 5 merged replies, 10 received.
 * ```
 *
 * @module
 */

import type { ResolvedAddress } from "../net/address.ts";
import { RECEIVE_BUFFER_SIZE } from "../net/payload.ts";
import { formatAddress } from "../net/address.ts";

/** A running merging echo; `await using` stops it. */
export interface MergingEcho extends AsyncDisposable {
  /** Where it listens. */
  target: ResolvedAddress;
  /** Replies sent so far, each holding `group` datagrams. */
  readonly replies: number;
}

/**
 * Starts an echo peer that returns every `group` datagrams of a client as
 * one (datagrams still held when it stops are never sent), followed by
 * `options.tail` when given: bytes that are no probe.
 */
export function startMergingEcho(
  group: number,
  options: { tail?: Uint8Array } = {},
): MergingEcho {
  const tail = options.tail ?? new Uint8Array(0);
  const conn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const held = new Map<string, Uint8Array[]>();
  let replies = 0;
  const loop = (async () => {
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    while (true) {
      try {
        const [data, from] = await conn.receive(buffer);
        const key = formatAddress(from as Deno.NetAddr);
        const parts = held.get(key) ?? [];
        parts.push(data.slice());
        if (parts.length < group) {
          held.set(key, parts);
          continue;
        }
        held.delete(key);
        parts.push(tail);
        const reply = new Uint8Array(
          parts.reduce((sum, part) => sum + part.length, 0),
        );
        let at = 0;
        for (const part of parts) {
          reply.set(part, at);
          at += part.length;
        }
        await conn.send(reply, from);
        replies++;
      } catch {
        return; // closed
      }
    }
  })();
  const { hostname, port } = conn.addr as Deno.NetAddr;
  return {
    target: { hostname, port, family: "IPv4" },
    get replies() {
      return replies;
    },
    async [Symbol.asyncDispose]() {
      conn.close();
      await loop;
    },
  };
}
