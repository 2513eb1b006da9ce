/**
 * udp-echo as a library: an RFC 862 UDP echo server with a reply policy, a
 * client that checks each echo, and measurement of round trips and loss
 * against any echo server.
 *
 * @example Echo one message off a server on a free port
 * ```ts
 * import { EchoClient, serveEcho } from "./mod.ts";
 * import { equal } from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const server = serveEcho({ hostname: "127.0.0.1", port: 0, signal: controller.signal });
 * const client = await EchoClient.open(server.addr);
 * try {
 *   const reply = await client.echo(new TextEncoder().encode("hello"));
 *   equal(reply.matches, true);
 * } finally {
 *   await client.close();
 *   controller.abort();
 * }
 * await server.finished;
 * ```
 *
 * @module
 */

export * from "./server.ts";
export * from "./client.ts";
export * from "./shared.ts";
export * from "./measure/mod.ts";
