/**
 * A reflector of ours that overflows a client's receive buffer on purpose,
 * for the host-drops test and benchmark: the scripts run as
 * `deno eval`/`deno run -` programs inside a namespace.
 *
 * @module
 */

/**
 * Holds every datagram until one comes from 127.0.0.1 (the go), saying
 * "port P", then "held N" once N (its first argument) are held, then sends
 * them all back at once and says "sent N".
 */
export const BURST_REFLECTOR = `
const count = Number(Deno.args[0]);
const conn = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
console.log("port " + conn.addr.port);
const held = [];
for (;;) {
  const [data, from] = await conn.receive();
  if (from.hostname === "127.0.0.1") break;
  held.push([data, from]);
  if (held.length === count) console.log("held " + count);
}
for (const [data, from] of held) await conn.send(data, from);
console.log("sent " + held.length);
conn.close();
`;

/** Sends the burst reflector on port `Deno.args[0]` its go. */
export const BURST_GO = `
const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
await conn.send(new Uint8Array(1), { transport: "udp", hostname: "127.0.0.1", port: Number(Deno.args[0]) });
conn.close();
`;
